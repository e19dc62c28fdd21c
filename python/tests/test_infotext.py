"""The A1111 `parameters` text: written in its exact format, read back into the same values."""

from diffusers_runner.infotext import format_parameters, generation_settings, parse_parameters


def test_the_text_has_a1111s_exact_layout():
    settings = generation_settings(steps=30, scheduler="euler_a", cfg_scale=7.0, seed=1234, width=1024, height=1024, model="sdxl_base")
    text = format_parameters("a castle on a hill", "blurry, low quality", settings)
    assert text == (
        "a castle on a hill\n"
        "Negative prompt: blurry, low quality\n"
        "Steps: 30, Sampler: Euler a, CFG scale: 7, Seed: 1234, Size: 1024x1024, Model: sdxl_base"
    )


def test_a_model_own_scheduler_gets_its_a1111_sampler_name_and_odd_values_are_quoted():
    settings = generation_settings(
        steps=20, scheduler="DPMSolverMultistepScheduler", cfg_scale=6.5, seed=1, width=512, height=768, model="my, model", extra={"Refiner": "r", "Denoising strength": 0.35, "Lora": None}
    )
    text = format_parameters("p", None, settings)
    assert text.splitlines()[1] == 'Steps: 20, Sampler: DPM++ 2M, CFG scale: 6.5, Seed: 1, Size: 512x768, Model: "my, model", Refiner: r, Denoising strength: 0.35'


def test_parsing_gives_back_what_was_written():
    prompt = "line one, (emphasis:1.2)\nline two"
    negative = "ugly\nsecond negative line"
    settings = generation_settings(steps=4, scheduler="dpmpp_2m_karras", cfg_scale=5.5, seed=42, width=256, height=256, model="a: b", extra={"Refiner switch at": 0.8})
    parsed_prompt, parsed_negative, parsed = parse_parameters(format_parameters(prompt, negative, settings))
    assert parsed_prompt == prompt and parsed_negative == negative
    assert parsed == {"Steps": "4", "Sampler": "DPM++ 2M Karras", "CFG scale": "5.5", "Seed": "42", "Size": "256x256", "Model": "a: b", "Refiner switch at": "0.8"}


def test_a_text_without_settings_is_all_prompt():
    assert parse_parameters("just a prompt, nothing else") == ("just a prompt, nothing else", "", {})


def test_flow_matching_and_few_step_schedulers_read_as_forge_writes_them():
    flux = generation_settings(steps=28, scheduler="FlowMatchEulerDiscreteScheduler", cfg_scale=1.0, seed=3, width=1024, height=1024, model="flux_dev", extra={"Distilled CFG Scale": 3.5})
    assert format_parameters("a fox", None, flux).splitlines()[1] == "Steps: 28, Sampler: Euler, Schedule type: Simple, CFG scale: 1, Seed: 3, Size: 1024x1024, Model: flux_dev, Distilled CFG Scale: 3.5"
    lightning = generation_settings(steps=4, scheduler="euler_trailing", cfg_scale=0.0, seed=3, width=1024, height=1024, model="sdxl_lightning")
    assert parse_parameters(format_parameters("a fox", None, lightning))[2]["Schedule type"] == "SGM Uniform"
