from cnnrun.allocator import keep_freed_memory


def test_keep_freed_memory_is_idempotent_and_reports_a_bool():
    first = keep_freed_memory()
    assert isinstance(first, bool)
    assert keep_freed_memory() is first
