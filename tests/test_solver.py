"""Filling from a solver: the weights ``caffe train --solver=...`` starts from."""
import numpy as np
import pytest

import fillers
from fillers.cli import _is_solver, main

NET = """
name: "staged"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "a" type: "InnerProduct" bottom: "data" top: "a"
        inner_product_param { num_output: 4 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "train_only" type: "InnerProduct" bottom: "a" top: "b" include { phase: TRAIN }
        inner_product_param { num_output: 3 weight_filler { type: "xavier" } bias_filler { type: "uniform" } } }
layer { name: "test_only" type: "InnerProduct" bottom: "a" top: "b" include { phase: TEST }
        inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
layer { name: "staged" type: "InnerProduct" bottom: "a" top: "c" include { stage: "finetune" }
        inner_product_param { num_output: 2 weight_filler { type: "msra" } } }
layer { name: "deep" type: "InnerProduct" bottom: "a" top: "d" include { min_level: 2 }
        inner_product_param { num_output: 2 weight_filler { type: "gaussian" } } }
layer { name: "marked" type: "InnerProduct" bottom: "a" top: "e" include { stage: "marked" }
        inner_product_param { num_output: 2 weight_filler { type: "xavier" } } }
"""


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def same(a, b):
    assert list(a) == list(b)
    for layer in a:
        for x, y in zip(a[layer], b[layer]):
            assert np.array_equal(x, y), layer


def test_a_solver_fills_its_train_net_with_its_seed_and_caffes_stream(tmp_path):
    write(tmp_path / "net.prototxt", NET)
    solver = write(tmp_path / "solver.prototxt", 'net: "net.prototxt"\nbase_lr: 0.01\nrandom_seed: 1701\n')
    params = fillers.fill_solver(solver)
    assert list(params) == ["a", "train_only"] and params.seed == 1701 and params.rng == "caffe"
    same(params, fillers.fill_net(tmp_path / "net.prototxt", seed=1701, rng="caffe", phase="TRAIN"))
    assert params.metadata["fillers.solver"] == str(solver)
    assert params.metadata["fillers.phase"] == "phase: TRAIN"


def test_train_state_and_the_nets_state_merge_as_in_caffe(tmp_path):
    # Caffe: NetState(phase=TRAIN), then MergeFrom(net.state), then MergeFrom(train_state): stages add up,
    # a level set replaces.
    write(tmp_path / "net.prototxt", 'state { stage: "marked" level: 1 }\n' + NET)
    solver = write(tmp_path / "solver.prototxt",
                   'net: "net.prototxt"\nrandom_seed: 5\ntrain_state { stage: "finetune" level: 2 }\n')
    net, _ = fillers.solver_train_net(solver)
    assert net.state == fillers.caffe_pb2.NetState(phase=fillers.caffe_pb2.TRAIN, level=2,
                                                   stage=["marked", "finetune"])
    params = fillers.fill_solver(solver)
    assert list(params) == ["a", "train_only", "staged", "deep", "marked"]
    same(params, fillers.fill_net(net, seed=5, rng="caffe", phase=None))
    # fill_net(phase="TRAIN") would reset the level to 0 as caffe::Net(file, TRAIN) does: "deep" goes.
    assert "deep" not in fillers.fill_net(net, seed=5, phase="TRAIN")


def test_a_solver_without_a_seed_gets_a_fresh_one(tmp_path, capsys):
    write(tmp_path / "net.prototxt", NET)
    solver = write(tmp_path / "solver.prototxt", 'net: "net.prototxt"\nrandom_seed: -1\n')
    first, second = fillers.fill_solver(solver), fillers.fill_solver(solver)
    assert first.seed != second.seed and 0 <= first.seed < 2**32
    out = tmp_path / "init.npz"
    assert main(["fill", str(solver), "-o", str(out)]) == 0
    seed = fillers.read_metadata(out)["fillers.seed"]
    assert f"seed {seed} (caffe)" in capsys.readouterr().err
    same(fillers.load(out), fillers.fill_solver(solver, seed=int(seed)))


def test_a_64_bit_random_seed_is_taken_modulo_2_32_as_caffe_does(tmp_path):
    write(tmp_path / "net.prototxt", NET)
    solver = write(tmp_path / "solver.prototxt", f'net: "net.prototxt"\nrandom_seed: {2**32 + 7}\n')
    assert fillers.fill_solver(solver).seed == 7
    assert fillers.fill_solver(solver, rng="philox").seed == 2**32 + 7


def test_a_relative_net_path_is_from_the_working_directory_then_beside_the_solver(tmp_path, monkeypatch):
    write(tmp_path / "run" / "net.prototxt", NET)
    write(tmp_path / "net.prototxt", NET.replace('name: "train_only"', 'name: "from_cwd"'))
    solver = write(tmp_path / "run" / "solver.prototxt", 'net: "net.prototxt"\nrandom_seed: 1\n')
    monkeypatch.chdir(tmp_path)
    assert "from_cwd" in fillers.fill_solver(solver)  # Caffe opens the path from the working directory
    monkeypatch.chdir(tmp_path / "run" / "..")
    (tmp_path / "net.prototxt").unlink()
    assert "train_only" in fillers.fill_solver(solver)  # not there: beside the solver


@pytest.mark.parametrize("field", ["net_param", "train_net_param"])
def test_embedded_nets(field):
    solver = f"{field} {{ {NET} }}\nrandom_seed: 3\n"
    same(fillers.fill_solver(solver), fillers.fill_net(fillers.load_net(NET), seed=3, rng="caffe", phase="TRAIN"))


def test_the_solvers_weights_are_applied_and_the_command_line_replaces_them(tmp_path):
    write(tmp_path / "net.prototxt", NET)
    first = fillers.fill_net(tmp_path / "net.prototxt", seed=10, phase="TRAIN")
    second = {"a": fillers.fill_net(tmp_path / "net.prototxt", seed=11)["a"]}
    fillers.save(first, tmp_path / "first.caffemodel")
    fillers.save(second, tmp_path / "second.npz")
    solver = write(tmp_path / "solver.prototxt",
                   f'net: "net.prototxt"\nrandom_seed: 4\nweights: "{tmp_path / "first.caffemodel"}, '
                   f'{tmp_path / "second.npz"}"\n')
    params = fillers.fill_solver(solver)
    assert np.array_equal(params["a"][0], second["a"][0])  # the later file wins
    assert np.array_equal(params["train_only"][1], first["train_only"][1])
    assert params.report.copied == ["a/0", "a/1", "train_only/0", "train_only/1"]
    out = tmp_path / "init.caffemodel"
    assert main(["fill", str(solver), "-o", str(out), "--weights", str(tmp_path / "second.npz"), "--quiet"]) == 0
    loaded = fillers.load(out)
    assert np.array_equal(loaded["a"][0], second["a"][0])
    plain = fillers.fill_solver(solver, weights={})
    assert np.array_equal(loaded["train_only"][0], plain["train_only"][0])  # the solver's weights replaced


def test_the_command_line_fills_a_solver_like_fill_solver(tmp_path, capsys):
    write(tmp_path / "net.prototxt", NET)
    solver = write(tmp_path / "train.prototxt", 'net: "net.prototxt"\nrandom_seed: 77\nbase_lr: 0.1\n')
    assert _is_solver(str(solver)) and not _is_solver(str(tmp_path / "net.prototxt"))
    out = tmp_path / "init.caffemodel"
    assert main(["fill", str(solver), "-o", str(out), "--quiet"]) == 0
    same(fillers.load(out), fillers.fill_solver(solver))
    assert main(["fill", str(solver), "-o", str(out), "--phase", "TEST"]) == 1
    assert "is a solver" in capsys.readouterr().err
    assert main(["inspect", str(solver)]) == 0
    table = capsys.readouterr().out
    assert "train_only" in table and "test_only" not in table


def test_a_broken_file_named_like_a_solver_reports_the_solvers_error(tmp_path, capsys):
    solver = write(tmp_path / "my_solver.prototxt", 'net: "net.prototxt"\nbase_lr: 0.1 {\n')
    assert main(["fill", str(solver), "-o", str(tmp_path / "x.npz")]) == 1
    assert "my_solver.prototxt:2" in capsys.readouterr().err
    # A net whose name says solver is still a net.
    net = write(tmp_path / "solver_net.prototxt", NET)
    assert not _is_solver(str(net))


def test_corpus_solvers_and_nets_are_told_apart(corpus_net):
    assert not _is_solver(str(corpus_net))


def test_corpus_solvers_are_solvers(corpus_solver):
    assert _is_solver(str(corpus_solver))
