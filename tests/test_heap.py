"""keep_freed_memory: a batch-sized tensor allocated again and again stops faulting its pages in each time."""

import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent(
    """
    import resource, torch
    from mmpiqa.train.heap import keep_freed_memory

    def faults():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(10):
            torch.empty(40 * 2**20 // 4).fill_(1.0)  # 40 MB: above glibc's largest default mmap threshold
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    plain = faults()
    assert keep_freed_memory() and keep_freed_memory()  # idempotent
    faults()  # the first allocation grows the heap once
    print(plain, faults())
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_batches_are_reused_not_faulted_in_again():
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    plain, kept = map(int, done.stdout.split())
    assert plain > 10 * 9000  # each 40 MB block faulted in again (10,240 pages of 4 KiB)
    assert kept < 1000
