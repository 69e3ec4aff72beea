"""SENSORIUM 2023 data: reader and writer of the released layout, normalisation, truth, synthetic generator,
torch Dataset. See docs/DATA.md.

numpy only (the server may import these): `reader` (open_mouse, open_dataset, DataFormatError), `normalisation`
(NormalisationStats, normalise_*), `truth` (open_truth, TruthFolder), `writer` (MouseWriter), `oracle`,
`synthetic` (SynthConfig, generate). torch: `dataset` (ClipDataset, collate_crop, open_clip_datasets).
"""
