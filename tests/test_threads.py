"""The thread policy: the count's sources in order, cgroup quotas, the OpenMP wait policy set before torch loads."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from audiocnn.core.errors import ConfigError
from audiocnn.core.threads import (ENV_THREADS, WAIT_SETTINGS, available_cpus, cgroup_cpu_limit, free_threads,
                                   prepare_environment,
                                   resolve_threads)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from test_engine import tiny_overrides  # noqa: E402


def _cgroup(tmp_path: Path, lines: str, files: dict[str, str]) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    root.mkdir(exist_ok=True)
    proc = tmp_path / "proc-cgroup"
    proc.write_text(lines)
    return root, proc


def test_cgroup_v2_quota_of_the_process_cgroup(tmp_path):
    root, proc = _cgroup(tmp_path, "0::/user.slice/job\n", {"user.slice/job/cpu.max": "150000 100000\n",
                                                            "cpu.max": "max 100000\n"})
    assert cgroup_cpu_limit(root, proc) == 1.5


def test_cgroup_v2_without_quota(tmp_path):
    root, proc = _cgroup(tmp_path, "0::/\n", {"cpu.max": "max 100000\n"})
    assert cgroup_cpu_limit(root, proc) is None


def test_cgroup_v1_quota_and_unlimited(tmp_path):
    root, proc = _cgroup(tmp_path, "4:cpu,cpuacct:/docker/abc\n3:memory:/docker/abc\n",
                         {"cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "250000\n",
                          "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n"})
    assert cgroup_cpu_limit(root, proc) == 2.5
    root, proc = _cgroup(tmp_path / "u", "4:cpu,cpuacct:/\n", {"cpu/cpu.cfs_quota_us": "-1\n",
                                                              "cpu/cpu.cfs_period_us": "100000\n"})
    assert cgroup_cpu_limit(root, proc) is None


def test_no_cgroup_files(tmp_path):
    assert cgroup_cpu_limit(tmp_path / "none", tmp_path / "missing") is None


def test_available_cpus_within_the_affinity_mask():
    assert 1 <= available_cpus() <= len(os.sched_getaffinity(0))


def test_count_sources_in_order():
    env = {ENV_THREADS: "3", "OMP_NUM_THREADS": "5", "LOCAL_WORLD_SIZE": "2"}
    assert resolve_threads(2, env) == 2                       # explicit
    assert resolve_threads(0, env) == 3                       # AUDIOCNN_NUM_THREADS
    del env[ENV_THREADS]
    assert resolve_threads(None, env) == 5                    # OMP_NUM_THREADS (torchrun sets it)
    del env["OMP_NUM_THREADS"]
    assert resolve_threads(None, env) == max(1, available_cpus() // 2)  # shared among local processes
    assert resolve_threads(None, {}) == available_cpus()


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_bad_count_names_the_variable(value):
    with pytest.raises(ConfigError, match=f"{ENV_THREADS}={value!r}"):
        resolve_threads(None, {ENV_THREADS: value})


def test_wait_policy_set_unless_the_user_chose_one():
    env: dict[str, str] = {}
    assert prepare_environment(env) == WAIT_SETTINGS and env == WAIT_SETTINGS
    for key in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME"):
        env = {key: "1"}
        assert prepare_environment(env) == {} and env == {key: "1"}


def test_command_sets_the_wait_policy_before_torch_loads():
    code = ("import sys, audiocnn.__main__ as m\n"
            "real = m.prepare_environment\n"
            "def spy():\n"
            "    print('torch loaded first:', 'torch' in sys.modules)\n"
            "    return real()\n"
            "m.prepare_environment = spy\n"
            "m.main(['list-models', 'lenet'])\n"
            "import os; print('GOMP_SPINCOUNT', os.environ.get('GOMP_SPINCOUNT'))\n")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert "torch loaded first: False" in out
    assert f"GOMP_SPINCOUNT {WAIT_SETTINGS['GOMP_SPINCOUNT']}" in out


def test_threads_flag_reaches_torch(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in (ENV_THREADS, "OMP_NUM_THREADS")}
    run = subprocess.run([sys.executable, "-m", "audiocnn", "train", str(ROOT / "recipes" / "quickstart.yaml"),
                          *[o for o in tiny_overrides(tmp_path, "trainer.epochs=1", "trainer.report=false")
                            if not o.startswith("trainer.threads")], "--threads", "1"],
                         env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    env_txt = next((tmp_path / "runs").rglob("env.txt")).read_text()
    assert "cpu threads: 1\n" in env_txt
    saved = next((tmp_path / "runs").rglob("config.yaml")).read_text()
    assert "threads: 1" in saved


def test_env_variable_reaches_torch():
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env[ENV_THREADS] = "1"
    code = "from audiocnn.core.threads import set_threads; import torch; set_threads(); print(torch.get_num_threads())"
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.strip() == "1"


def test_free_threads():
    assert free_threads(2, 2, None) == 2          # load unknown: all usable CPUs
    assert free_threads(2, 2, 0.3) == 2           # a little background work
    assert free_threads(2, 2, 0.6) == 1           # one core taken
    assert free_threads(2, 2, 5.0) == 1           # never fewer than one
    assert free_threads(4, 64, 30.0) == 4         # a quota of 4 on a big host with free cores


def _fake_proc(root: Path, pid: int, busy: tuple[int, int], own: int, child: int) -> None:
    (root / str(pid) / "task" / str(pid)).mkdir(parents=True, exist_ok=True)
    (root / "77").mkdir(exist_ok=True)
    # cpu0 busy: user nice system idle iowait irq softirq steal; cpu1 is outside the affinity given to the probe
    (root / "stat").write_text(f"cpu 1 1 1 1\ncpu0 {busy[0]} 0 {busy[1]} 500 0 0 0 0\ncpu1 900 0 0 0 0 0 0 0\n")
    (root / str(pid) / "stat").write_text(f"{pid} (python (x)) R 1 " + " ".join(["0"] * 9) + f" {own} 0 0 0\n")
    (root / "77" / "stat").write_text("77 (worker) S " + " ".join(["0"] * 10) + f" {child} 0\n")
    (root / str(pid) / "task" / str(pid) / "children").write_text("77 ")


def test_load_probe_counts_other_processes_only(tmp_path, monkeypatch):
    import audiocnn.core.threads as threads

    clock = iter([0.0, 2.0])
    monkeypatch.setattr(threads.time, "monotonic", lambda: next(clock))
    pid = os.getpid()
    _fake_proc(tmp_path, pid, busy=(100, 0), own=10, child=5)
    probe = threads.LoadProbe(cpus=[0], proc=tmp_path)
    # 2 s later: cpu0 used 300 more ticks, 100 of them this process (80) and its loader worker (20)
    _fake_proc(tmp_path, pid, busy=(300, 100), own=90, child=25)
    tick = threads.LoadProbe._TICK
    assert probe.others() == pytest.approx((300 - 100) / tick / 2.0)


def test_probe_sees_a_busy_process_and_training_takes_the_free_cores(tmp_path):
    from audiocnn.core.threads import LoadProbe

    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one CPU: no free core to measure")
    # not a child of this process (children count as its own, as loader workers do): started by one that exits
    spawn = ("import subprocess, sys; print(subprocess.Popen([sys.executable, '-c', 'while True: pass'], "
             "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).pid)")
    busy = int(subprocess.run([sys.executable, "-c", spawn], capture_output=True, text=True, check=True).stdout)
    try:
        import time
        time.sleep(0.5)
        probe = LoadProbe()
        time.sleep(1.0)
        assert probe.others() > 0.6
        env = {k: v for k, v in os.environ.items() if k not in (ENV_THREADS, "OMP_NUM_THREADS")}
        run = subprocess.run([sys.executable, "-m", "audiocnn", "train", str(ROOT / "recipes" / "quickstart.yaml"),
                              *[o for o in tiny_overrides(tmp_path, "trainer.epochs=1", "trainer.report=false")
                                if not o.startswith("trainer.threads")]], env=env, capture_output=True, text=True)
    finally:
        os.kill(busy, 9)
    assert run.returncode == 0, run.stderr[-2000:]
    import csv
    with open(next((tmp_path / "runs").rglob("metrics.csv"))) as f:
        rows = list(csv.DictReader(f))
    want = max(1, min(available_cpus(), len(os.sched_getaffinity(0)) - 1))
    assert [int(r["threads"]) for r in rows] == [want]
