import re

import pytest

from visionml.errors import VisionMLError
from visionml.explain import XaiParams, parse_xai_parameters


def test_defaults_are_azures():
    assert parse_xai_parameters(None) == parse_xai_parameters({}) == XaiParams()
    p = XaiParams()
    assert (p.xai_algorithm, p.visualizations, p.attributions) == ("xrai", True, False)
    assert (p.confidence_score_threshold_multilabel, p.n_steps, p.xrai_fast, p.approximation_method) == (
        0.5, 50, True, "riemann_middle")


def test_json_values_and_cli_strings_parse_alike():
    from_json = parse_xai_parameters({"xai_algorithm": "integrated_gradients", "attributions": True, "n_steps": 8,
                                      "confidence_score_threshold_multilabel": 0.25,
                                      "approximation_method": "gausslegendre", "xrai_fast": False})
    from_cli = parse_xai_parameters({"xai_algorithm": "Integrated_Gradients", "attributions": "true", "n_steps": "8",
                                     "confidence_score_threshold_multilabel": "0.25",
                                     "approximation_method": "gausslegendre", "xrai_fast": "false"})
    assert from_json == from_cli
    assert from_json.n_steps == 8 and from_json.attributions is True and from_json.xrai_fast is False


# Each message names the key, the value as JSON writes it (never Python's repr) and the valid values.
@pytest.mark.parametrize("raw, fragments", [
    ({"xai_algorithm": "gradcam"}, ['xai_algorithm: "gradcam"', "xrai, integrated_gradients, guided_gradcam, "
                                    "guided_backprop"]),
    ({"xai_algorithm": "xria"}, ['Did you mean "xrai"']),
    ({"n_steps": 0}, ["n_steps: 0", "an integer from 2"]),
    ({"n_steps": 1}, ["n_steps: 1", "an integer from 2"]),  # Azure's minimum is 2
    ({"n_steps": 2.5}, ["n_steps", "an integer"]),
    ({"n_steps": True}, ["n_steps: true", "an integer"]),
    ({"n_steps": "many"}, ['n_steps: "many"', "an integer"]),
    ({"n_steps": "inf"}, ['n_steps: "inf"', "an integer"]),
    ({"confidence_score_threshold_multilabel": 1.5}, ["confidence_score_threshold_multilabel: 1.5",
                                                      "from 0.0 to 1.0"]),
    ({"confidence_score_threshold_multilabel": "nan"}, ["confidence_score_threshold_multilabel", "from 0.0 to 1.0"]),
    ({"visualizations": "maybe"}, ['visualizations: "maybe"', "true or false", '"yes"', '"off"']),
    ({"visualizations": None}, ["visualizations: null", "true or false"]),
    ({"approximation_method": "simpson"}, ['approximation_method: "simpson"',
                                           "riemann_right, riemann_left, riemann_middle, riemann_trapezoid, "
                                           "gausslegendre"]),
    ({"n_step": 10}, ['unknown key "n_step"', 'Did you mean "n_steps"', "Valid keys"]),
])
def test_bad_values_name_the_valid_ones(raw, fragments):
    with pytest.raises(VisionMLError) as error:
        parse_xai_parameters(raw)
    for fragment in fragments:
        assert fragment in str(error.value)
    assert not PYTHON_REPR.search(str(error.value)), str(error.value)


PYTHON_REPR = re.compile(r"\bNone\b|\bTrue\b|\bFalse\b|'\w+'|<\w[\w.]* object")


def test_strtobool_words_and_every_approximation_method_are_azures():
    """Azure reads flags with strtobool and takes each of captum's approximation methods."""
    for word, meaning in (("True", True), ("yes", True), ("ON", True), ("1", True), ("f", False), ("No", False)):
        assert parse_xai_parameters({"attributions": word}, strict=True).attributions is meaning
    for method in ("riemann_right", "riemann_left", "riemann_middle", "riemann_trapezoid", "gausslegendre"):
        assert parse_xai_parameters({"approximation_method": method}, strict=True).approximation_method == method


def test_the_step_cap_is_the_callers_and_is_named():
    assert parse_xai_parameters({"n_steps": 5000}).n_steps == 5000  # no cap unless one is given
    with pytest.raises(VisionMLError) as error:
        parse_xai_parameters({"n_steps": 31}, strict=True, max_steps=30)
    assert "over 30" in str(error.value) and "--max-xai-steps" in str(error.value)
    assert "from 2 to 30" in str(error.value)


@pytest.mark.parametrize("raw", [{"n_steps": "10"}, {"xai_algorithm": "XRAI"}, {"confidence_score_threshold_multilabel": "0.5"}])
def test_strict_takes_json_types_only(raw):
    """What the REST endpoint takes is what /openapi.json says: a JSON integer, names spelled exactly."""
    parse_xai_parameters(raw)  # the CLI's --set strings parse
    with pytest.raises(VisionMLError):
        parse_xai_parameters(raw, strict=True)


def test_parameters_must_be_an_object():
    with pytest.raises(VisionMLError, match="must be an object"):
        parse_xai_parameters(["xrai"])


def test_the_parser_and_the_schema_are_one_definition():
    """Each key is one typed field of the hyperparameters' machinery: the parser, /openapi.json's schema and
    XaiParams' defaults all read it, so they cannot disagree."""
    from visionml.config import Param
    from visionml.explain.params import XAI_FIELDS, xai_schema

    schema = xai_schema(max_steps=30)["properties"]
    assert list(schema) == list(XAI_FIELDS) and all(isinstance(f, Param) for f in XAI_FIELDS.values())
    for name, field in XAI_FIELDS.items():
        assert schema[name]["default"] == field.default == getattr(XaiParams(), name)
        if field.kind == "choice":
            assert schema[name]["enum"] == list(field.choices)
    assert (schema["n_steps"]["minimum"], schema["n_steps"]["maximum"]) == (2, 30)
    assert "maximum" not in xai_schema(max_steps=None)["properties"]["n_steps"]


def test_the_schemas_flag_pattern_is_the_parsers_words():
    from visionml.config import STRTOBOOL_FALSE, STRTOBOOL_TRUE
    from visionml.explain.params import flag_schema

    pattern = flag_schema()["anyOf"][2]["pattern"]
    for word in STRTOBOOL_TRUE + STRTOBOOL_FALSE:
        for spelled in (word, word.upper(), word.title()):
            assert re.fullmatch(pattern, spelled)
            assert parse_xai_parameters({"xrai_fast": spelled}, strict=True).xrai_fast is (word in STRTOBOOL_TRUE)
    for word in ("enable", "disabled", " yes", "tru"):
        assert not re.fullmatch(pattern, word)
        with pytest.raises(VisionMLError, match="xai_parameters.xrai_fast"):
            parse_xai_parameters({"xrai_fast": word}, strict=True)


def test_cli_integers_follow_the_hyperparameters_rule():
    """`visionml explain --set n_steps=8.0` is refused as `--set number_of_epochs=8.0` is: one parser, one rule
    for the strings of every integer setting (a JSON 8.0 is the number 8 and is taken)."""
    assert parse_xai_parameters({"n_steps": 8.0}, strict=True).n_steps == 8
    with pytest.raises(VisionMLError, match='n_steps: "8.0" is not valid. Valid values: an integer from 2.'):
        parse_xai_parameters({"n_steps": "8.0"})
