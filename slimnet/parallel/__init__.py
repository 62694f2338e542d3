"""Which process this is among the data-parallel ranks (torch.distributed's process group); used
by every layer that sums over ranks. Starting the ranks (torchrun) is the pipeline's."""
