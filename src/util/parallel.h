// ParallelFor: the one way attn runs work on several threads (OpenMP
// underneath; swapping the runtime touches only parallel.cc).
#ifndef ATTN_SRC_UTIL_PARALLEL_H_
#define ATTN_SRC_UTIL_PARALLEL_H_

#include <cstdint>
#include <functional>

namespace attn::util {

// Threads a call will use: requested, or every core when requested is 0.
int resolve_threads(int requested);

// Calls body(i, worker) once for each i in [0, n), on at most num_threads
// workers numbered [0, num_threads). Items are handed out dynamically, so a
// body must not depend on which worker runs it for anything but scratch.
// An exception a body throws stops the other workers taking items and is
// rethrown to the caller once the region ends (the first, if several);
// threads the system cannot start are an attn::Error, not an exit.
void ParallelFor(int64_t n, int num_threads,
                 const std::function<void(int64_t i, int worker)>& body);

// ParallelFor whose items start in increasing order: item i begins only
// after every item before it has begun. A body may therefore wait for
// progress of an earlier item (never a later one) without deadlock, as
// long as each worker has a core to itself or the wait yields.
void ParallelForOrdered(int64_t n, int num_threads,
                        const std::function<void(int64_t i, int worker)>& body);

// One step of a busy wait: a pause, and every so often a yield of the core.
// Inside a region where a body has thrown, it unwinds the waiting body
// instead (the item it waits on may never progress).
void SpinPause(int64_t& spins);

}  // namespace attn::util

#endif  // ATTN_SRC_UTIL_PARALLEL_H_
