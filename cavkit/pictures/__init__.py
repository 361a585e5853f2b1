"""Pictures and exports: inpainting figures, sound-localization heatmaps, embedding export, run reports.

Modules (each imports torch/matplotlib only where it needs them):

* :mod:`cavkit.pictures.patches` — patchify/unpatchify of images and fbanks (spec §1.5).
* :mod:`cavkit.pictures.inpaint` — masked input and pasted reconstruction, the 2×3 figure (spec §9.1).
* :mod:`cavkit.pictures.heatmap` — audio-to-patch similarity maps, overlays, animated GIF/APNG.
* :mod:`cavkit.pictures.localization` — pointing game, IoU of the thresholded map, centre prior.
* :mod:`cavkit.pictures.export` — embedding files (safetensors or NumPy) with clip ids.
* :mod:`cavkit.pictures.report` — training curves from TensorBoard logs and a one-page HTML summary.
"""
