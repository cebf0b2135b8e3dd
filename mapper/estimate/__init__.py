"""What a run will cost before any work: blocks, km², tiles and their price per source, storage, time and CPU/GPU
hours, each figure with its basis (`mapper estimate`; `mapper run` prints the same when it starts)."""
