"""Arrow's CPU pool in prep: it gets a thread per worker while prep runs, even where
OMP_NUM_THREADS shrank it, and its size is put back; shards are compressed on it only
while there are fewer workers than cores, with the same bytes either way."""

from __future__ import annotations

import pyarrow as pa
import pytest

from aunet_cli import prep as prep_module
from aunet_cli.errors import AunetError
from aunet_cli.shards import write_atomic

from .test_prep_readers import make_inputs, run


def _arrow_pool(size: int):
    before = pa.cpu_count()
    pa.set_cpu_count(size)
    try:
        yield
    finally:
        pa.set_cpu_count(before)


@pytest.fixture
def arrow_pool_of_one():
    """Arrow's pool as OMP_NUM_THREADS=1 sizes it (common on clusters)."""
    yield from _arrow_pool(1)


@pytest.fixture
def arrow_pool_of_four():
    yield from _arrow_pool(4)


@pytest.fixture
def pool_sizes(monkeypatch) -> list[int]:
    """The Arrow pool size each chunk's shards were compressed with."""
    seen: list[int] = []
    real = prep_module.write_chunk

    def write_chunk(*args, **kwargs):
        seen.append(pa.cpu_count())
        return real(*args, **kwargs)

    monkeypatch.setattr(prep_module, "write_chunk", write_chunk)
    return seen


@pytest.mark.usefixtures("arrow_pool_of_one")
def test_each_worker_gets_an_arrow_thread_and_the_size_is_put_back(tmp_path, pool_sizes):
    inputs = make_inputs(tmp_path / "in")
    run(inputs, tmp_path / "out", readers=1, workers=3)
    assert len(pool_sizes) > 20
    assert set(pool_sizes) == {3}
    assert pa.cpu_count() == 1


@pytest.mark.usefixtures("arrow_pool_of_four")
def test_a_pool_with_a_thread_per_worker_is_left_as_it_is(tmp_path, pool_sizes):
    inputs = make_inputs(tmp_path / "in")
    run(inputs, tmp_path / "out", readers=1, workers=2)
    assert set(pool_sizes) == {4}
    assert pa.cpu_count() == 4


@pytest.mark.usefixtures("arrow_pool_of_one")
def test_the_size_is_put_back_when_prep_fails(tmp_path):
    inputs = make_inputs(tmp_path / "in", bad={"in1.jsonl": "first"})
    with pytest.raises(AunetError):
        run(inputs, tmp_path / "out", readers=1, workers=3)
    assert pa.cpu_count() == 1


@pytest.mark.parametrize(("workers", "on_pool"), [(2, True), (4, False), (6, False)])
def test_shards_are_compressed_on_the_pool_only_with_fewer_workers_than_cores(
    tmp_path, monkeypatch, workers, on_pool
):
    monkeypatch.setattr(prep_module, "default_workers", lambda: 4)  # the machine's cores
    seen: list[bool] = []
    real = prep_module.write_atomic

    def spy(*args, threads: bool = True, **kwargs):
        seen.append(threads)
        return real(*args, threads=threads, **kwargs)

    monkeypatch.setattr(prep_module, "write_atomic", spy)
    run(make_inputs(tmp_path / "in"), tmp_path / "out", readers=1, workers=workers)
    assert len(seen) > 20
    assert set(seen) == {on_pool}


def test_compressing_on_the_pool_or_not_writes_the_same_bytes(tmp_path):
    table = pa.table(
        {
            "text": pa.array([f"document {i} ".encode() * (i % 50 + 1) for i in range(3000)]),
            "pool_1": pa.array(
                [list(range(0, i % 400, 3)) for i in range(3000)], pa.list_(pa.int32())
            ),
        }
    )
    a = write_atomic(tmp_path / "a.arrow", table, threads=True)
    b = write_atomic(tmp_path / "b.arrow", table, threads=False)
    assert a == b
    assert (tmp_path / "a.arrow").read_bytes() == (tmp_path / "b.arrow").read_bytes()
