"""The networks: the model factory, VQGAN, CLIP, Wav2CLIP, checkpoint loading, weight downloads."""
