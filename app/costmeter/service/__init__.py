"""The running monitor: sampling loop -> energy intervals -> store."""
