"""benchmarks/gpu.py's own logic, without running a benchmark: the table, the JSON, and a failing section's status."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("gpu_benchmark", ROOT / "benchmarks" / "gpu.py")
gpu = importlib.util.module_from_spec(_spec)
sys.modules["gpu_benchmark"] = gpu  # its dataclasses look their module up there
_spec.loader.exec_module(gpu)


def _sections():
    def ok():
        return gpu.Outcome("frontend", rows=[gpu.Row("frontend", "logmel, torch", 1234.5, "audio-s/s", 100.0, 12.345,
                                                     "a | b")], raw={"x": 1})

    def skipped():
        raise gpu.Skipped("no CUDA device: 1 test skipped")

    def broken():
        raise ValueError("first line\nthe last line says why")

    return [("frontend", ok), ("tests", skipped), ("train", broken)]


def test_table_and_json(tmp_path, capsys):
    outcomes = gpu.run_sections(_sections())
    assert [o.status for o in outcomes] == ["ok", "skipped", "error"]
    assert "train: error" in capsys.readouterr().err
    table = gpu.write_results(tmp_path, {"device": "cpu: test", "torch": "x"}, outcomes)
    assert (tmp_path / "gpu.md").read_text() == table
    lines = table.splitlines()
    assert "- device: cpu: test" in lines
    assert "| section | setting | figure | unit | baseline | ratio | notes |" in lines
    assert "| frontend | logmel, torch | 1234 | audio-s/s | 100 | 12.35x | a / b |" in lines
    assert any(line.startswith("| tests | - | skipped: no CUDA device: 1 test skipped |") for line in lines)
    assert any(line.startswith("| train | - | error: ValueError: the last line says why |") for line in lines)
    doc = json.loads((tmp_path / "gpu.json").read_text())
    assert [s["status"] for s in doc["sections"]] == ["ok", "skipped", "error"]
    assert doc["sections"][0]["raw"] == {"x": 1} and doc["header"]["torch"] == "x"
    assert not list(tmp_path.glob("*.tmp*")) and sorted(p.name for p in tmp_path.iterdir()) == ["gpu.json", "gpu.md"]


def test_a_failing_section_makes_the_exit_status_1(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu.Bench, "frontend", lambda self: (_ for _ in ()).throw(RuntimeError("boom")))
    monkeypatch.setattr(gpu.Bench, "embed", lambda self: (_ for _ in ()).throw(gpu.Skipped("no torchvggish")))
    assert gpu.main(["--device", "cpu", "--only", "embed", "--out", str(tmp_path / "a"), "--work", str(tmp_path)]) == 0
    assert gpu.main(["--device", "cpu", "--only", "frontend", "embed", "--out", str(tmp_path / "b"),
                     "--work", str(tmp_path)]) == 1
    assert "error: RuntimeError: boom" in (tmp_path / "b" / "gpu.md").read_text()
