// attn: command-line front end of the library. A client of include/attn/
// only; each subcommand lives in its own file.
#include <attn/attn.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>

#include "cli/bench.h"
#include "cli/generate.h"
#include "cli/kv_memory.h"
#include "cli/run.h"

int main(int argc, char** argv) {
  CLI::App app{"attn: self-attention on the CPU, exactly specified"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string(attn::version()));

  attn_cli::RunArgs run_args;
  CLI::App* run = app.add_subcommand(
      "run", "Compute attention over .npy inputs (or a built-in example)");
  attn_cli::add_run_options(*run, run_args);

  attn_cli::BenchArgs bench_args;
  CLI::App* bench = app.add_subcommand(
      "bench", "Measure machine peaks, then time attention against them");
  attn_cli::add_bench_options(*bench, bench_args);

  attn_cli::KvMemoryArgs kv_args;
  CLI::App* kv = app.add_subcommand(
      "kv-memory", "KV-cache bytes per model for MHA, GQA and MQA");
  attn_cli::add_kv_memory_options(*kv, kv_args);

  attn_cli::GenerateArgs gen_args;
  CLI::App* gen = app.add_subcommand("generate",
                                     "Continue token ids with a GPT-2 or Llama "
                                     "checkpoint (models with an LM head)");
  attn_cli::add_generate_options(*gen, gen_args);

  // A first word that is neither a flag nor a subcommand is a misspelt
  // subcommand (CLI11 would say only "A subcommand is required").
  if (argc > 1 && argv[1][0] != '-') {
    bool known = false;
    for (const CLI::App* sub : app.get_subcommands({})) {
      known = known || sub->check_name(argv[1]);
    }
    if (!known) {
      std::fprintf(stderr,
                   "attn: unknown subcommand '%s'; expected run, bench, "
                   "kv-memory or generate (attn --help)\n",
                   argv[1]);
      return static_cast<int>(CLI::ExitCodes::ExtrasError);
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    if (*run) return attn_cli::run_command(run_args);
    if (*bench) return attn_cli::bench_command(bench_args);
    if (*kv) return attn_cli::kv_memory_command(kv_args);
    if (*gen) return attn_cli::generate_command(gen_args);
  } catch (const attn::Error& e) {
    std::fprintf(stderr, "attn: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "attn: error: %s\n", e.what());
    return 2;
  }
  return 0;
}
