"""`make bench-peer` (benchmarks/peer/bench_peer.py): the interleaving, the ratios and
bench-peer.json's fields by hand, then one tiny end-to-end round of each side in the peer's venv
(no timings checked)."""

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The harness is a development tool outside the package: imported from its folder.
sys.path.insert(0, str(REPO / "benchmarks" / "peer"))
PEER_PYTHON = REPO / ".venv-peer" / "bin" / "python"
# The fields `make bench`'s table reads from bench-peer.json.
CONTRACT = ("kseg_train_patches_per_s", "peer_train_patches_per_s", "ratio", "kseg_predict_patches_per_s",
            "peer_predict_patches_per_s", "predict_ratio")


def _kseg(train, predict, train_of_ceiling=0.5):
    # A kseg worker's result: 1 GFLOP/patch, batch 2, so a train step is 6 GFLOP and a
    # predict step 2 GFLOP; the default ceiling step (16x32x32x128) is 14.495514624 GFLOP.
    return {"train_patches_per_s": train, "predict_patches_per_s": predict, "flops_per_patch": 1e9,
            "batch_size": 2, "train_of_local_ceiling": train_of_ceiling, "predict_of_local_ceiling": 1.0}


def _rounds():
    peer = {"train_patches_per_s": 2.0, "predict_patches_per_s": 10.0, "train_per_ceiling": 0.1,
            "predict_per_ceiling": 0.5, "versions": {"segmentation-models": "1.0.1"}}
    return [
        {"round": 1, "side": "kseg", "result": _kseg(3.0, 12.0)},
        {"round": 1, "side": "kseg float32", "result": _kseg(4.0, 11.0)},
        {"round": 1, "side": "peer", "result": peer},
        {"round": 2, "side": "peer", "result": {**peer, "train_patches_per_s": 1.0}},
        {"round": 2, "side": "kseg float32", "result": {"error": "exit 1: boom"}},
        {"round": 2, "side": "kseg", "result": _kseg(5.0, 14.0, train_of_ceiling=0.7)},
    ]


def test_plan_interleaves_and_mirrors_kseg_fit_defaults():
    from bench_peer import plan

    jobs = plan(rounds=3, steps=2, precision="mixed_bfloat16")
    # A B C, C B A, A B C: each side runs as often first as last across pairs of rounds.
    assert [(n, side) for n, side, _ in jobs] == [
        (1, "kseg"), (1, "kseg float32"), (1, "peer"), (2, "peer"), (2, "kseg float32"), (2, "kseg"),
        (3, "kseg"), (3, "kseg float32"), (3, "peer")]
    tasks = {side: task for _, side, task in jobs}
    assert tasks["kseg"]["precision"] == "mixed_bfloat16" and tasks["kseg float32"]["precision"] == "float32"
    assert tasks["kseg"]["deterministic"] and not tasks["kseg"]["frames"]  # kseg fit's CPU default
    assert tasks["peer"] == {"num_classes": 12, "precision": "float32", "patch": 128, "batch_size": 16,
                             "steps": 2}


def test_summary_medians_ratios_and_contract_fields():
    from bench_peer import summarize, table_rows

    doc = summarize(_rounds())
    assert set(CONTRACT) <= set(doc)
    # Medians over the rounds that ran: kseg (3, 5) -> 4, peer (2, 1) -> 1.5; the failed
    # float32 round is left out, so float32 is its one good round.
    assert doc["kseg_train_patches_per_s"] == 4.0 and doc["peer_train_patches_per_s"] == 1.5
    assert doc["ratio"] == pytest.approx(4.0 / 1.5)
    assert doc["predict_ratio"] == pytest.approx(13.0 / 10.0)
    assert doc["float32_ratio"] == pytest.approx(4.0 / 1.5)
    assert doc["rounds_ok"] == {"kseg": 2, "kseg float32": 1, "peer": 2}
    # Paired: kseg's median(c/t) = train_of_local_ceiling * ceiling FLOPs / step FLOPs.
    ceiling = 3 * 2 * 16 * 32 * 32 * 128 * 128 * 9
    assert doc["kseg_train_per_ceiling"] == pytest.approx(0.6 * ceiling / 6e9)
    assert doc["paired_ratio"] == pytest.approx(0.6 * ceiling / 6e9 / 0.1)
    assert doc["paired_predict_ratio"] == pytest.approx(1.0 * ceiling / 2e9 / 0.5)
    doc.update(kseg_precision="mixed_bfloat16", peer_precision="float32")
    columns, rows = table_rows(doc)
    assert columns == ["", "kseg mixed_bfloat16", "kseg float32", "peer float32"]
    table = {row[0]: row[1:] for row in rows}
    assert table["train patches/s"] == [4.0, 4.0, 1.5] and table["predict patches/s"] == [13.0, 11.0, 10.0]
    assert table["train ratio"] == [doc["ratio"], doc["float32_ratio"], 1.0]
    paired = [doc["paired_predict_ratio"], doc["paired_float32_predict_ratio"], 1.0]
    assert table["predict, paired ratio"] == paired


def test_a_side_with_no_good_round_has_no_ratio():
    from bench_peer import summarize

    rounds = [r for r in _rounds() if r["side"] != "peer"]
    doc = summarize(rounds)
    assert doc["peer_train_patches_per_s"] is None and doc["ratio"] is None and doc["paired_ratio"] is None
    assert doc["kseg_train_patches_per_s"] == 4.0


def test_missing_peer_venv_is_one_line_with_the_fix(tmp_path):
    from bench_peer import bench_peer, main
    from click.testing import CliRunner

    from kseg.errors import KsegError

    with pytest.raises(KsegError, match="make bench-peer"):
        bench_peer(python=str(tmp_path / "nope" / "python"))
    out = tmp_path / "bench-peer.json"
    cli = CliRunner().invoke(main, ["--peer-python", str(tmp_path / "nope"), "--json", str(out)])
    assert cli.exit_code == 1 and "make bench-peer" in cli.output and not out.exists()
    assert "Traceback" not in cli.output


def test_cli_writes_the_document_and_prints_the_table(tmp_path, monkeypatch):
    import bench_peer as peer
    from click.testing import CliRunner

    doc = {**peer.summarize(_rounds()), "kseg_precision": "mixed_bfloat16", "peer_precision": "float32",
           "load_before": [1.5, 1.0, 1.0], "rounds": _rounds()}
    seen = {}
    monkeypatch.setattr(peer, "bench_peer", lambda *args, **kw: seen.setdefault("args", args) and doc)
    out = tmp_path / "bench-peer.json"
    cli = CliRunner().invoke(peer.main, ["--rounds", "2", "--steps", "1", "--precision", "float32",
                                         "--json", str(out)])
    assert cli.exit_code == 0, cli.output
    assert seen["args"][:3] == (2, 1, "float32")
    assert json.loads(out.read_text())["ratio"] == pytest.approx(4.0 / 1.5)
    assert "peer float32" in cli.output and "2.67" in cli.output  # the train ratio, 2 digits
    assert "round 2 kseg float32: exit 1: boom" in cli.output


@pytest.mark.slow
@pytest.mark.skipif(not PEER_PYTHON.is_file(),
                    reason=".venv-peer is absent: `make bench-peer` builds it")
def test_bench_peer_smoke():
    """One round, one step of each side on 32 px patches, batch 2: every side runs."""
    import bench_peer as peer

    doc = peer.bench_peer(rounds=1, steps=1, precision="float32", python=str(PEER_PYTHON), patch=32,
                          batch_size=2, ceiling_shape=(2, 8, 8, 16))
    assert not [r for r in doc["rounds"] if "error" in r["result"]], doc["rounds"]
    for name in CONTRACT:
        assert doc[name] > 0
    versions = doc["versions"]
    assert versions["peer"]["segmentation-models"] == "1.0.1"
    # tf-keras of the same minor version as the TensorFlow both sides run on.
    assert versions["peer"]["tf-keras"].split(".")[:2] == versions["kseg"]["tensorflow"].split(".")[:2]
    result = next(r["result"] for r in doc["rounds"] if r["side"] == "peer")
    assert result["params"] > 20_000_000  # the ResNet-34 U-Net, not a stand-in
    json.dumps(doc)  # plain JSON
