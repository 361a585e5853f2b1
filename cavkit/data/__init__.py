"""Data: decoding, kaldi fbanks, image transforms, datafiles, datasets, preparation and shards.

Module map (spec §6):

* :mod:`cavkit.data.configs` -- dataset parameters (attrs, no torch import);
* :mod:`cavkit.data.storage` -- fsspec reads and atomic writes;
* :mod:`cavkit.data.audio` -- decoding to float waveforms (PyAV / WAV) and resampling to 16 kHz mono;
* :mod:`cavkit.data.fbank` -- the published kaldi fbank, padding, normalisation, Sync segments;
* :mod:`cavkit.data.images` -- frame transforms;
* :mod:`cavkit.data.datafile` -- datafile JSON, label CSV, label vectors, class-balancing weights;
* :mod:`cavkit.data.datasets` -- the ``cav_mae`` and ``cav_mae_sync`` datasets;
* :mod:`cavkit.data.synthetic` -- the ``synthetic`` audio-visual dataset;
* :mod:`cavkit.data.video` -- PyAV: 16 kHz mono audio and frames at the published positions;
* :mod:`cavkit.data.prepare` -- ``cavkit prepare`` (videos -> wav + frames + datafile);
* :mod:`cavkit.data.shards` / :mod:`cavkit.data.shard_dataset` -- tar shards and the ``shards`` dataset;
* :mod:`cavkit.data.check` -- ``cavkit data check``;
* :mod:`cavkit.data.commands` -- the click commands.

This package's ``__init__`` imports nothing heavy so that configs can be listed without torch.
"""
