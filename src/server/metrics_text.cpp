#include <sstream>

#include "server/server.h"

namespace jinx::server {

namespace {

void header(std::ostringstream& o, const std::string& name, const char* type, const char* help) {
  o << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
}

void histogram(std::ostringstream& o, const std::string& name, const std::string& labels,
               const Histogram& h, const char* help) {
  header(o, name, "histogram", help);
  int64_t cum = 0;
  for (size_t i = 0; i < h.bounds.size(); ++i) {
    cum += h.counts[i];
    o << name << "_bucket{" << labels << ",le=\"" << h.bounds[i] << "\"} " << cum << '\n';
  }
  o << name << "_bucket{" << labels << ",le=\"+Inf\"} " << h.count << '\n';
  o << name << "_sum{" << labels << "} " << h.sum << '\n';
  o << name << "_count{" << labels << "} " << h.count << '\n';
}

}  // namespace

std::string metrics_text(const EngineMetrics& m, const std::string& model_name) {
  std::ostringstream o;
  std::string esc;  // label values escape \ " and newline
  for (char c : model_name) {
    if (c == '\\' || c == '"') esc += '\\';
    if (c == '\n') {
      esc += "\\n";
      continue;
    }
    esc += c;
  }
  const std::string L = "model_name=\"" + esc + "\"";
  auto gauge = [&](const char* name, const char* help, double v) {
    header(o, name, "gauge", help);
    o << name << '{' << L << "} " << v << '\n';
  };
  auto counter = [&](const char* name, const char* help, double v) {
    header(o, name, "counter", help);
    o << name << '{' << L << "} " << v << '\n';
  };
  gauge("jinx:num_requests_running", "Requests in the running batch.", m.running);
  gauge("jinx:num_requests_waiting", "Requests waiting for a slot.", m.waiting);
  gauge("jinx:kv_blocks_used", "KV cache blocks held by requests.",
        static_cast<double>(m.kv_blocks_used));
  gauge("jinx:kv_blocks_total", "KV cache blocks in the pool.",
        static_cast<double>(m.kv_blocks_total));
  gauge("jinx:kv_cache_usage_perc", "Fraction of KV cache blocks in use (0-1).",
        m.kv_blocks_total > 0
            ? static_cast<double>(m.kv_blocks_used) / static_cast<double>(m.kv_blocks_total)
            : 0.0);
  counter("jinx:prompt_tokens_total", "Prompt tokens submitted.",
          static_cast<double>(m.prompt_tokens));
  counter("jinx:generation_tokens_total", "Tokens generated.",
          static_cast<double>(m.generation_tokens));
  counter("jinx:spec_decode_num_draft_tokens_total", "Speculative tokens guessed and checked.",
          static_cast<double>(m.spec_draft_tokens));
  counter("jinx:spec_decode_num_accepted_tokens_total", "Speculative tokens that stood.",
          static_cast<double>(m.spec_accepted_tokens));
  counter("jinx:prefix_cache_hits_total", "Prompt tokens served by the prefix cache.",
          static_cast<double>(m.prefix_hit_tokens));
  gauge("jinx:prefix_cache_hit_rate", "Prefix cache hits over prompt tokens (0-1).",
        m.prompt_tokens > 0
            ? static_cast<double>(m.prefix_hit_tokens) / static_cast<double>(m.prompt_tokens)
            : 0.0);
  counter("jinx:num_preemptions_total", "Sequences preempted (KV recomputed later).",
          static_cast<double>(m.preemptions));
  header(o, "jinx:request_success_total", "counter", "Finished requests by finish reason.");
  for (const char* r : {"stop", "length", "abort"}) {
    auto it = m.finished_by_reason.find(r);
    o << "jinx:request_success_total{" << L << ",finished_reason=\"" << r << "\"} "
      << (it == m.finished_by_reason.end() ? 0 : it->second) << '\n';
  }
  histogram(o, "jinx:time_to_first_token_seconds", L, m.ttft,
            "Time from submission to the first token.");
  histogram(o, "jinx:time_per_output_token_seconds", L, m.tpot,
            "Mean time per output token after the first, per request.");
  histogram(o, "jinx:e2e_request_latency_seconds", L, m.e2e,
            "Time from submission to the last token.");
  gauge("jinx:engine_failed", "1 if the engine thread stopped on an internal error.",
        m.failed ? 1 : 0);
  return o.str();
}

}  // namespace jinx::server
