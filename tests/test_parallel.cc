// util::ParallelFor and ParallelForOrdered: a body's exception reaches the
// caller (an exception escaping an OpenMP region terminates the process),
// a waiting body is released when an earlier item fails, and threads the
// system cannot start are an attn::Error.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <thread>
#include <string>
#include <vector>

#include "attn/error.h"
#include "src/util/parallel.h"

namespace attn {
namespace {

TEST(Parallel, ABodysExceptionReachesTheCaller) {
  for (int threads : {1, 2, 4}) {
    std::atomic<int> ran{0};
    // Items take 1 ms, so the 1000 would take 250 ms or more on 4 threads:
    // the others must stop long before, once item 7 has thrown.
    EXPECT_THROW(util::ParallelFor(1000, threads,
                                   [&](int64_t i, int) {
                                     ++ran;
                                     if (i == 7) throw std::runtime_error("7");
                                     std::this_thread::sleep_for(
                                         std::chrono::milliseconds(1));
                                   }),
                 std::runtime_error);
    EXPECT_LT(ran.load(), 1000) << "workers stop taking items";
    // The region is usable again afterwards.
    std::atomic<int64_t> sum{0};
    util::ParallelFor(100, threads, [&](int64_t i, int) { sum += i; });
    EXPECT_EQ(sum.load(), 4950);
  }
}

TEST(Parallel, AWaitingBodyIsReleasedWhenAnEarlierItemFails) {
  // Item 1 waits for item 0 to finish, which never happens: it throws.
  std::atomic<bool> done0{false};
  EXPECT_THROW(util::ParallelForOrdered(2, 2,
                                        [&](int64_t i, int) {
                                          if (i == 0)
                                            throw Error("item 0 failed");
                                          int64_t spins = 0;
                                          while (!done0.load())
                                            util::SpinPause(spins);
                                        }),
               Error);
}

#if !defined(__SANITIZE_ADDRESS__)
TEST(Parallel, ThreadsThatCannotStartAreAnError) {
  // In a child: an address-space limit just above what the process maps
  // leaves no room for many 8 MiB thread stacks.
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    rlimit stack{};
    getrlimit(RLIMIT_STACK, &stack);
    rlimit as{};
    // Current mappings plus 64 MiB: room for the probe's first threads.
    long pages = 0;
    if (FILE* f = std::fopen("/proc/self/statm", "r")) {
      if (std::fscanf(f, "%ld", &pages) != 1) pages = 0;
      std::fclose(f);
    }
    as.rlim_cur = as.rlim_max =
        static_cast<rlim_t>(pages) * sysconf(_SC_PAGESIZE) + (64 << 20);
    if (pages == 0 || setrlimit(RLIMIT_AS, &as) != 0) _exit(3);
    try {
      util::ParallelFor(1000, 1000, [](int64_t, int) {});
    } catch (const Error& e) {
      _exit(std::string(e.what()).find("could not start 1000 threads") !=
                    std::string::npos
                ? 0
                : 2);
    } catch (...) {
      _exit(4);
    }
    _exit(1);  // started them all: the limit did not bite
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "the child died instead of an error";
  EXPECT_EQ(WEXITSTATUS(status), 0);
}
#endif

}  // namespace
}  // namespace attn
