"""Serial and local-process pools: small tasks, worker errors, bounded imap (prospect_sim.pool)."""
import functools
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from prospect_sim import paramfile, pool, processes
from prospect_sim.errors import WorkerError

TOY = Path(__file__).resolve().parents[1] / "mpi" / "toy_params.py"
RP = {"toy_delay": 0.0}


def _build():
    return paramfile.load(TOY).build(RP)


def _square(x):
    return x * x


def _pid_and_model_id(_):
    return os.getpid(), id(pool.ingredients().model)


def _fail_on_three(x):
    if x == 3:
        raise ValueError(f"cannot do {x}")
    return x


def _lnp(theta):
    from prospect.fitting import lnprobfn
    ing = pool.ingredients()
    return lnprobfn(np.asarray(theta), obs=ing.obs, model=ing.model, sps=ing.sps, nested=True)


def test_serial_pool_builds_once_and_maps():
    with pool.open_pool({"workers": 1}, _build) as wp:
        assert wp.kind == "serial" and wp.size == 1
        assert wp.map(_square, [1, 2, 3]) == [1, 4, 9]
        assert list(wp.imap_unordered(_square, iter([4]))) == [16]
        assert pool.ingredients().model.ndim == 2
    with pytest.raises(RuntimeError, match="no ingredients"):
        pool.ingredients()


def test_process_pool_each_worker_uses_its_own_ingredients():
    with pool.open_pool({"workers": 2}, _build) as wp:
        assert wp.kind == "processes" and wp.size == 2
        assert wp.map(_square, range(5)) == [0, 1, 4, 9, 16]
        pids = {pid for pid, _ in wp.map(_pid_and_model_id, range(8))}
        assert os.getpid() not in pids and 1 <= len(pids) <= 2
        assert sorted(wp.imap_unordered(_square, iter(range(20)))) == [i * i for i in range(20)]


def test_worker_exception_becomes_worker_error_with_its_message():
    with pool.open_pool({"workers": 2}, _build) as wp:
        with pytest.raises(WorkerError, match="ValueError: cannot do 3"):
            wp.map(_fail_on_three, range(6))
        with pytest.raises(WorkerError, match="cannot do 3"):
            list(wp.imap_unordered(_fail_on_three, range(6)))


def _pid_and_ingredients_id(_):
    import os
    return os.getpid(), id(pool.ingredients())


def test_forked_workers_inherit_the_masters_ingredients():
    """Built once, in the master, before the fork: the workers never call build."""
    import os
    calls = []

    def build():
        calls.append(os.getpid())
        return _build()

    with pool.open_pool({"workers": 2}, build) as wp:
        master_id = id(pool.ingredients())
        seen = wp.map(_pid_and_ingredients_id, range(8))
    assert calls == [os.getpid()]
    assert {i for _, i in seen} == {master_id}            # the same objects, inherited
    assert os.getpid() not in {p for p, _ in seen}


def test_worker_that_cannot_build_fails_fast():
    """Workers that build their own (spawned, or nothing to inherit) report a failed build."""
    def build():
        raise RuntimeError("no grid on this worker")

    pool.set_ingredients(None)
    with pytest.raises(WorkerError, match="RuntimeError: no grid on this worker"):
        processes.ProcessPool(2, build)


def test_prospector_partial_pickles_small_and_gives_identical_results():
    """fit_model's functools.partial(lnprobfn, obs=, model=, sps=) is sent as names."""
    from prospect.fitting import lnprobfn
    with pool.open_pool({"workers": 2}, _build) as wp:
        ing = pool.ingredients()
        partial = functools.partial(lnprobfn, obs=ing.obs, model=ing.model, sps=ing.sps,
                                    noise=ing.noise, nested=True)
        plain, light = len(pickle.dumps(partial)), len(pool.dumps_task(partial))
        assert light < 300 < plain, (light, plain)
        thetas = [np.array([m, s]) for m in (1e10, 2e10) for s in (-0.5, 0.5)]
        here = [partial(t) for t in thetas]
        assert wp.map(partial, thetas) == here
        assert wp.map(_lnp, thetas) == here


def test_pools_pickle_to_none():
    assert pickle.loads(pickle.dumps(pool.SerialPool())) is None


def test_mpi_not_detected_without_launcher(monkeypatch):
    for var in pool._MPI_ENV:
        monkeypatch.delenv(var, raising=False)
    assert not pool.mpi_launched()
    assert pool.launcher_rank() == 0
    monkeypatch.setenv("PMI_RANK", "2")
    assert pool.mpi_launched() and pool.launcher_rank() == 2


def test_useful_workers_cuts_to_tasks_and_cores(caplog):
    from prospect_sim.pool import useful_workers
    with caplog.at_level("WARNING", logger="prospect_sim.pool"):
        assert useful_workers(1000, tasks=2, cores=2) == 2
        assert "this run has 2 tasks" in caplog.text
        caplog.clear()
        assert useful_workers(9, tasks=None, cores=2) == 4          # twice the cores
        assert "gives the run 2 cores" in caplog.text
        caplog.clear()
        assert useful_workers(3, tasks=10, cores=2) == 3
        assert useful_workers(2, tasks=2, cores=2) == 2
        assert useful_workers(1, tasks=0, cores=1) == 1
    assert caplog.text == ""
