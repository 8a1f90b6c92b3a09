"""tritriage: which of vLLM's Triton kernels work on Ascend NPUs, which fail, where and why."""

__version__ = "0.1.0"
