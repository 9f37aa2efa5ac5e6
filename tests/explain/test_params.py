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


@pytest.mark.parametrize("raw, fragments", [
    ({"xai_algorithm": "gradcam"}, ["xai_algorithm", "'gradcam'", "xrai, integrated_gradients, guided_gradcam, "
                                    "guided_backprop"]),
    ({"xai_algorithm": "xria"}, ["Did you mean 'xrai'"]),
    ({"n_steps": 0}, ["n_steps", "from 1 to 1000"]),
    ({"n_steps": 2.5}, ["n_steps", "an integer"]),
    ({"n_steps": True}, ["n_steps"]),
    ({"n_steps": "many"}, ["n_steps"]),
    ({"confidence_score_threshold_multilabel": 1.5}, ["confidence_score_threshold_multilabel", "from 0.0 to 1.0"]),
    ({"visualizations": "yes"}, ["visualizations", "true, false"]),
    ({"approximation_method": "riemann_left"}, ["approximation_method", "riemann_middle, gausslegendre"]),
    ({"n_step": 10}, ["unknown key 'n_step'", "Did you mean 'n_steps'", "Valid keys"]),
])
def test_bad_values_name_the_valid_ones(raw, fragments):
    with pytest.raises(VisionMLError) as error:
        parse_xai_parameters(raw)
    for fragment in fragments:
        assert fragment in str(error.value)


def test_parameters_must_be_an_object():
    with pytest.raises(VisionMLError, match="must be an object"):
        parse_xai_parameters(["xrai"])
