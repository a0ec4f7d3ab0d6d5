"""Run by tests/mpi/test_pool_mpi.py under ``mpiexec -n 3``: MPIWorkPool.map directly."""
import os

from prospect_sim import pool
from prospect_sim.errors import WorkerError


class _Ingredients:
    obs = model = sps = noise = obs_noise = None
    run_params = {}


def _build():
    return _Ingredients()


def _square_and_rank(x):
    return x * x, int(os.environ.get("PMI_RANK", -1))


def _fail_on_37(x):
    if x == 37:
        raise ValueError(f"cannot do {x}")
    return x


if __name__ == "__main__":
    with pool.open_pool({}, _build) as wp:
        assert wp.kind == "mpi" and wp.size == 2
        for n in (0, 1, 2, 3, 5, 100, 1001):      # one task per message up to many per chunk
            out = wp.map(_square_and_rank, range(n))
            assert [v for v, _ in out] == [i * i for i in range(n)], n
            if n >= 2:
                assert {r for _, r in out} == {1, 2}, (n, sorted({r for _, r in out}))
        try:
            wp.map(_fail_on_37, range(100))
        except WorkerError as err:
            assert "ValueError: cannot do 37" in str(err), err
        else:
            raise AssertionError("no WorkerError")
        assert wp.map(_fail_on_37, range(10)) == list(range(10))   # no reply left behind
        out = list(wp.imap_unordered(_square_and_rank, range(7)))
        assert sorted(v for v, _ in out) == [i * i for i in range(7)]
    print("pool ok")
