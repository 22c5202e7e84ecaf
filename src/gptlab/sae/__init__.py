"""Sparse autoencoders: train one on a model's activations at a hook point, evaluate it, read its
features, and steer or ablate the model through them.

    model.py        SparseAutoencoder: TopK (default) or ReLU + L1, encode / decode
    options.py      SaeOptions: every training setting, validated before any work
    activations.py  activations streamed from the model into a bounded, shuffled buffer
    train.py        the training loop (AuxK, unit-norm decoder, LR schedule, exact resume)
    folder.py       the SAE folder: sae.safetensors + sae.json, written atomically; SAELens export
    evaluate.py     L0, variance explained, loss recovered, dead / dense features
    features.py     per-feature dashboards: top contexts, densities, histograms, logit effects
    page.py         the self-contained HTML page of the dashboards
    intervene.py    steering (add a feature's direction) and ablation (zero a feature)
"""
