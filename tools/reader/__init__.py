"""The tiny reader: a small model of Mistral Small 3.2's architecture trained on generated pages.

pagegen: seeded pages with ground truth; model: the PyTorch training twin of vLLM's Pixtral;
data: pipeline requests -> mistral_common tokens (training = inference); export: the Mistral-format
model folder vLLM loads; check_vllm_parity: vLLM and the torch model must compute the same thing.
"""
