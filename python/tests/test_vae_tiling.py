"""VAE tiling turns on past about 1.5 megapixels and off again below, per job, on the VAE the pipeline shares."""

from diffusers_runner.generate import VAE_TILING_ABOVE_PIXELS, use_vae_tiling
from diffusers_runner.tiny_models import _vae


def test_tiles_only_images_past_the_threshold_and_untiles_the_next_small_one():
    vae = _vae()
    assert use_vae_tiling(vae, 1024, 1024) is False and vae.use_tiling is False
    assert 1536 * 1024 > VAE_TILING_ABOVE_PIXELS
    assert use_vae_tiling(vae, 1536, 1024) is True and vae.use_tiling is True
    assert use_vae_tiling(vae, 512, 512) is False and vae.use_tiling is False


def test_a_vae_without_tiling_is_left_alone():
    assert use_vae_tiling(object(), 2048, 2048) is False
