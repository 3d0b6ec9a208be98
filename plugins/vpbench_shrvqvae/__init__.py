"""S-HR-VQVAE, vpbench's reference model plugin (see :mod:`vpbench_shrvqvae.model`)."""

import vpbench
from vpbench_shrvqvae.model import SHRVQVAE

__all__ = ["SHRVQVAE"]


@vpbench.hookimpl
def vpbench_register_models(register):
    register(SHRVQVAE)
