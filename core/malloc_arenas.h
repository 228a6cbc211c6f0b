// Keeps a small process small: glibc's malloc gives threads their own arenas
// (up to 8 per core), and memory freed into one is not reused by the others,
// so a few worker threads passing chunk buffers around hold several MiB more
// than they use. One arena removes that; the large allocations here are per
// batch of chunks or per pack, too few for the shared lock to matter. Measured with
// `ferryctl snapshot create` of the 1 GiB mixed dataset (3 runs each): peak
// RSS 30.3-31.0 MiB with glibc's default, 25.4-26.3 MiB with one arena, the
// same wall time (2.4-3.0 s).
#pragma once

namespace ferry {

// Call first in main(), before any thread starts. No-op without glibc, and
// when MALLOC_ARENA_MAX is set in the environment (the operator decides).
void UseOneMallocArena();

}  // namespace ferry
