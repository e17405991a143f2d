// The one row type and reporter of `attn bench`: every suite (attention
// rows, KV-cache rows, backward rows) fills a Table of Cells; the table
// prints its rows as they are measured, or the whole bench becomes one JSON
// document (nlohmann-json) with each table's rows as objects keyed by
// column.
#ifndef ATTN_CLI_BENCH_REPORT_H_
#define ATTN_CLI_BENCH_REPORT_H_

#include <fmt/core.h>

#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace attn_cli {

// A value as printed and as stored in JSON.
struct Cell {
  std::string text;
  nlohmann::json value;

  static Cell str(std::string s) { return {s, s}; }
  // fmt spec for the table, e.g. "{:.2f}"; NaN prints as "-" and is null.
  static Cell num(double x, const char* spec) {
    if (std::isnan(x)) return {"-", nullptr};
    return {fmt::format(fmt::runtime(spec), x), x};
  }
  static Cell integer(int64_t x) { return {std::to_string(x), x}; }
  // Shown one way, stored another (e.g. "12.3x" in the table, the naive
  // time in ms in JSON).
  static Cell shown(std::string text, nlohmann::json value) {
    return {std::move(text), std::move(value)};
  }
  // A percentage: "12.3%" in the table, 12.3 in JSON.
  static Cell percent(double x) { return {fmt::format("{:.1f}%", x), x}; }
  // "12.3x" (naive over timed) in the table, naive's ms in JSON; "-" and
  // null when naive was not run (NaN).
  static Cell speedup(double naive_ms, double ms) {
    if (std::isnan(naive_ms)) return {"-", nullptr};
    return {fmt::format("{:.1f}x", naive_ms / ms), naive_ms};
  }
  // Scratch in MiB in the table, bytes in JSON.
  static Cell scratch(double mib) {
    return {fmt::format("{:.2f}MiB", mib), mib * 1048576.0};
  }
  // The reference check: "err/naive err" (and FAILED) in the table, the
  // verdict in JSON.
  static Cell check(double err, double naive_err, bool ok) {
    return {fmt::format("{:.1e}/{:.1e}{}", err, naive_err, ok ? "" : " FAILED"),
            ok};
  }
};

struct Column {
  std::string key;     // JSON name
  std::string header;  // table heading; empty: JSON only
  int width = 10;
  bool left = false;
};

class Table {
 public:
  Table(std::string title, std::vector<Column> columns, bool json)
      : title_(std::move(title)), columns_(std::move(columns)), json_(json) {}

  // Prints the title (if any) and headings (table mode).
  void begin() const {
    if (json_) return;
    if (!title_.empty()) fmt::print("{}\n", title_);
    std::string line;
    for (const Column& c : columns_) {
      if (c.header.empty()) continue;
      line += pad(c.header, c) + " ";
    }
    fmt::print("{}\n", trim(line));
  }
  // Adds a row (one cell per column) and prints it (table mode).
  void add(std::vector<Cell> cells) {
    if (!json_) {
      std::string line;
      for (size_t i = 0; i < columns_.size(); ++i) {
        if (columns_[i].header.empty()) continue;
        line += pad(cells[i].text, columns_[i]) + " ";
      }
      fmt::print("{}\n", trim(line));
      std::fflush(stdout);
    }
    nlohmann::json row = nlohmann::json::object();
    for (size_t i = 0; i < columns_.size(); ++i)
      row[columns_[i].key] = cells[i].value;
    rows_.push_back(std::move(row));
  }
  const nlohmann::json& rows() const { return rows_; }
  bool empty() const { return rows_.empty(); }

 private:
  static std::string pad(const std::string& s, const Column& c) {
    return c.left ? fmt::format("{:<{}}", s, c.width)
                  : fmt::format("{:>{}}", s, c.width);
  }
  static std::string trim(std::string s) {
    while (!s.empty() && s.back() == ' ') s.pop_back();
    return s;
  }

  std::string title_;
  std::vector<Column> columns_;
  bool json_;
  nlohmann::json rows_ = nlohmann::json::array();
};

}  // namespace attn_cli

#endif  // ATTN_CLI_BENCH_REPORT_H_
