"""Search-space expressions in both of Azure's spellings, parsed without eval."""

import optuna
import pytest

from visionml.errors import VisionMLError
from visionml.sweep.space import grid, parse_expression, parse_search_space


@pytest.mark.parametrize("text,kind,args,values", [
    ("uniform(0.0001, 0.01)", "uniform", (0.0001, 0.01), ()),
    ("loguniform(-9.2, -4.6)", "loguniform", (-9.2, -4.6), ()),
    ("quniform(10, 50, 5)", "quniform", (10.0, 50.0, 5.0), ()),
    ("randint(5)", "randint", (5.0,), ()),
    ("normal(0, 1)", "normal", (0.0, 1.0), ()),
    ("choice('sgd', 'adam')", "choice", (), ("sgd", "adam")),
    ("choice(600, 800)", "choice", (), (600, 800)),
    ("choice(['a', \"b\"])", "choice", (), ("a", "b")),
])
def test_string_form(text, kind, args, values):
    d = parse_expression(text)
    assert (d.kind, d.args, d.values) == (kind, args, values)


def test_mapping_form_and_constants():
    assert parse_expression({"type": "uniform", "min_value": 0.1, "max_value": 0.2}).args == (0.1, 0.2)
    assert parse_expression({"type": "choice", "values": [1, 2]}).values == (1, 2)
    assert parse_expression({"type": "quniform", "min_value": 1, "max_value": 9, "q": 2}).args == (1, 9, 2)
    assert parse_expression("sgd").values == ("sgd",)
    assert parse_expression(0.01).values == (0.01,)


@pytest.mark.parametrize("bad,message", [
    ("uniform(1)", "takes 2 argument"),
    ("unifrom(0, 1)", "Did you mean uniform"),
    ("uniform(2, 1)", "min_value < max_value"),
    ("uniform(__import__('os').system('true'), 1)", "cannot parse"),
    ({"type": "uniform", "min_value": 0}, "needs max_value"),
    ({"type": "choise", "values": [1]}, "Did you mean choice"),
    ({"type": "uniform", "min": 0, "max_value": 1}, "unknown key"),
    ("choice()", "at least one value"),
])
def test_bad_expressions_fail_clearly(bad, message):
    with pytest.raises(VisionMLError, match=message):
        parse_expression(bad)


def test_subspaces_and_grid():
    space = parse_search_space([
        {"model_name": "choice('resnet18', 'mobilenetv2')", "learning_rate": {"type": "choice", "values": [0.1, 0.01]}},
        {"model_name": "resnet34"},
    ])
    assert len(space) == 2
    assert grid(space) == [
        {"model_name": "resnet18", "learning_rate": 0.1}, {"model_name": "resnet18", "learning_rate": 0.01},
        {"model_name": "mobilenetv2", "learning_rate": 0.1}, {"model_name": "mobilenetv2", "learning_rate": 0.01},
        {"model_name": "resnet34"},
    ]


def test_suggest_respects_ranges():
    space = parse_search_space([{
        "lr": "uniform(0.001, 0.01)", "lr2": "loguniform(-9, -4)", "n": "quniform(10, 50, 5)",
        "k": "randint(3)", "opt": "choice('sgd', 'adam')"}])[0]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(30):
        t = study.ask()
        v = {name: d.suggest(t, name) for name, d in space.items()}
        assert 0.001 <= v["lr"] <= 0.01
        assert 1.2e-4 <= v["lr2"] <= 1.9e-2
        assert v["n"] % 5 == 0 and 10 <= v["n"] <= 50 and isinstance(v["n"], int)
        assert v["k"] in (0, 1, 2)
        assert v["opt"] in ("sgd", "adam")
        study.tell(t, 0.0)
