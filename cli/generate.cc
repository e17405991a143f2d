// `attn generate`: loads a GPT-2/Llama-layout checkpoint (a model with an LM
// head) and continues each prompt (token ids; attn has no tokenizer), printing
// the new ids and the time per token.
#include "cli/generate.h"

#include <attn/attn.h>
#include <attn/nn.h>
#include <fmt/core.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <string>

namespace attn_cli {

void add_generate_options(CLI::App& cmd, GenerateArgs& a) {
  cmd.add_option("--config", a.config, "the checkpoint's config.json")
      ->required();
  cmd.add_option("--weights", a.weights, "its safetensors files (every shard)")
      ->required();
  cmd.add_option("--prompt", a.prompts,
                 "token ids, comma-separated; repeat for a batch")
      ->required();
  cmd.add_option("--max-new-tokens", a.max_new_tokens,
                 "tokens to add per prompt")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 30))
      ->capture_default_str();
  cmd.add_option("--temperature", a.temperature, "0 = greedy")
      ->capture_default_str();
  cmd.add_option("--top-k", a.top_k, "0 = no limit")->capture_default_str();
  cmd.add_option("--top-p", a.top_p, "nucleus mass, 1 = no limit")
      ->capture_default_str();
  cmd.add_option("--seed", a.seed, "sampling seed, in [0, 2^64)")
      ->capture_default_str()
      ->check(CLI::Validator(
          [](const std::string& text) -> std::string {
            // Digits only, in range: CLI11 alone would wrap -1 and
            // saturate 2^64 and beyond to 2^64 - 1.
            uint64_t value = 0;
            const char* end = text.data() + text.size();
            const auto [ptr, ec] = std::from_chars(text.data(), end, value);
            if (text.empty() || ec != std::errc() || ptr != end) {
              return "must be an integer in [0, 2^64), got " + text;
            }
            return {};
          },
          "UINT64"));
  cmd.add_option("--eos", a.eos, "stop after this id (-1: never)")
      ->capture_default_str();
}

namespace {

// "1,2, 3": ids separated by commas, spaces around an id allowed; an empty
// item (",,", a leading or trailing comma) or anything but digits is an
// error naming the text.
std::vector<int64_t> parse_ids(const std::string& text) {
  std::vector<int64_t> ids;
  const auto bad = [&] {
    return attn::Error("--prompt: \"" + text +
                       "\" is not a comma-separated list of token ids");
  };
  size_t at = 0;
  for (;;) {
    const size_t comma = std::min(text.find(',', at), text.size());
    size_t b = at, e = comma;
    while (b < e && text[b] == ' ') ++b;
    while (e > b && text[e - 1] == ' ') --e;
    int64_t v = 0;
    const auto [ptr, ec] = std::from_chars(text.data() + b, text.data() + e, v);
    if (b == e || ec != std::errc() || ptr != text.data() + e) throw bad();
    ids.push_back(v);
    if (comma == text.size()) break;
    at = comma + 1;
  }
  return ids;
}

}  // namespace

int generate_command(const GenerateArgs& a) {
  std::vector<std::vector<int64_t>> prompts;
  for (const std::string& p : a.prompts) prompts.push_back(parse_ids(p));
  const auto t0 = std::chrono::steady_clock::now();
  const attn::nn::TransformerModel model =
      attn::nn::load_model(a.config, a.weights);
  const auto t1 = std::chrono::steady_clock::now();
  // Models with absolute positions end at their context: say so before
  // generating rather than fail part way with nothing printed.
  const attn::nn::ModelConfig& mc = model.config();
  if (mc.absolute != attn::nn::AbsolutePosition::kNone) {
    for (const auto& p : prompts) {
      const int64_t L = static_cast<int64_t>(p.size());
      if (L + a.max_new_tokens > mc.max_positions) {
        throw attn::Error(
            "--max-new-tokens: a prompt of " + std::to_string(L) +
            " ids plus " + std::to_string(a.max_new_tokens) +
            " new tokens exceed the model's context of " +
            std::to_string(mc.max_positions) +
            " positions (max_position_embeddings / n_positions); at most " +
            std::to_string(std::max<int64_t>(mc.max_positions - L, 0)) +
            " new tokens fit");
      }
    }
  }
  attn::nn::GenerateOptions o;
  o.max_new_tokens = a.max_new_tokens;
  o.sampling = {a.temperature, a.top_k, a.top_p, a.seed};
  if (a.eos >= 0) o.eos = a.eos;
  const auto out = attn::nn::generate(model, prompts, o);
  const auto t2 = std::chrono::steady_clock::now();
  int64_t produced = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    produced += static_cast<int64_t>(out[i].size());
    std::string ids;
    for (int64_t t : out[i])
      ids += (ids.empty() ? "" : ",") + std::to_string(t);
    fmt::print("{}\n", ids);
  }
  const double load_s = std::chrono::duration<double>(t1 - t0).count();
  const double gen_s = std::chrono::duration<double>(t2 - t1).count();
  fmt::print(stderr,
             "loaded in {:.2f} s; {} tokens in {:.3f} s ({:.1f} tokens/s incl. "
             "prefill)\n",
             load_s, produced, gen_s, produced / std::max(gen_s, 1e-9));
  return 0;
}

}  // namespace attn_cli
