"""The package's public face: a few names at the top, loaded on first use, torch not before."""

import subprocess
import sys

import gptlab


def test_import_gptlab_and_the_cli_parser_do_not_load_torch():
    code = (
        "import sys, gptlab, gptlab.cli; gptlab.cli.build_parser(); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_public_names_are_the_library_objects():
    from gptlab.checkpoints.load import load_model
    from gptlab.checkpoints.model_folder import save_model
    from gptlab.inference.generate import GenerationConfig, generate, generate_text
    from gptlab.model.config import ModelConfig
    from gptlab.model.gpt import GPT
    from gptlab.train.config import build_run_config

    expected = [GPT, ModelConfig, load_model, save_model, generate, generate_text]
    expected += [GenerationConfig, build_run_config]
    assert [getattr(gptlab, name) for name in gptlab.PUBLIC] == expected
    assert set(gptlab.__all__) == {"GptlabError", "__version__", *gptlab.PUBLIC}


def test_an_unknown_name_is_an_attribute_error():
    try:
        gptlab.no_such_thing  # noqa: B018
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:
        raise AssertionError("gptlab.no_such_thing should not exist")
