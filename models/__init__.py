"""Torch models: crystal representation, the CSPNet denoiser, diffusion, training and checkpoints.

Plain ``nn.Module``s and pure functions: nothing here knows about Prefect, the store or the campaign.
"""
