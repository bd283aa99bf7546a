import ctypes.util

from ooo_lightning.cpu import keep_freed_memory


def test_allocator_setting_applies_on_glibc_and_is_idempotent():
    result = keep_freed_memory()
    assert isinstance(result, bool)
    if ctypes.util.find_library("c"):
        assert result  # glibc's mallopt accepted all three settings
    assert keep_freed_memory() is result
