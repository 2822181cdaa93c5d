#include "common/metrics.h"

#include <prometheus/exposer.h>

#include <fmt/format.h>

#include <unordered_map>

namespace lego {

class Metrics::Collector : public prometheus::Collectable {
 public:
  explicit Collector(const Metrics* m) : m_(m) {}
  std::vector<prometheus::MetricFamily> Collect() const override {
    m_->RunHooks();
    return m_->registry_->Collect();
  }

 private:
  const Metrics* m_;
};

Metrics::Metrics()
    : registry_(std::make_shared<prometheus::Registry>()), collector_(std::make_shared<Collector>(this)) {}

Metrics::~Metrics() = default;  // exposer_, declared last, goes first: no scrape outlives the hook

uint64_t Metrics::OnCollect(std::function<void()> hook) {
  std::lock_guard lock(hook_mu_);
  hooks_.emplace_back(next_hook_id_, std::move(hook));
  return next_hook_id_++;
}

void Metrics::RemoveCollectHook(uint64_t id) {
  std::lock_guard lock(hook_mu_);
  std::erase_if(hooks_, [id](const auto& h) { return h.first == id; });
}

uint64_t Metrics::MirrorOnCollect(std::function<std::vector<proto::StatsEntry>()> source,
                                  const std::string& help) {
  // Touched by this hook only, and hooks run one read at a time (hook_mu_).
  auto gauges = std::make_shared<std::unordered_map<std::string, prometheus::Gauge*>>();
  return OnCollect([this, source = std::move(source), help, gauges] {
    for (const auto& e : source()) {
      prometheus::Gauge*& g = (*gauges)[e.name];
      if (!g) g = &Gauge(e.name, help);
      g->Set(e.value);
    }
  });
}

void Metrics::RunHooks() const {
  std::lock_guard lock(hook_mu_);
  for (const auto& [id, hook] : hooks_) hook();
}

prometheus::Counter& Metrics::Counter(const std::string& name, const std::string& help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(*registry_).Add({});
}

prometheus::Gauge& Metrics::Gauge(const std::string& name, const std::string& help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(*registry_).Add({});
}

std::vector<proto::StatsEntry> Metrics::Snapshot() const {
  RunHooks();
  std::vector<proto::StatsEntry> out;
  for (const auto& family : registry_->Collect()) {
    for (const auto& m : family.metric) {
      std::string name = family.name;
      if (!m.label.empty()) {
        name += "{";
        for (size_t i = 0; i < m.label.size(); ++i)
          name += fmt::format("{}{}=\"{}\"", i ? "," : "", m.label[i].name, m.label[i].value);
        name += "}";
      }
      double v = 0;
      switch (family.type) {
        case prometheus::MetricType::Counter:
          v = m.counter.value;
          break;
        case prometheus::MetricType::Gauge:
          v = m.gauge.value;
          break;
        default:
          continue;
      }
      out.push_back({std::move(name), v});
    }
  }
  return out;
}

Result<uint16_t> Metrics::StartHttp(const std::string& bind) {
  try {
    exposer_ = std::make_unique<prometheus::Exposer>(bind, /*num_threads=*/1);
    exposer_->RegisterCollectable(collector_);
    auto ports = exposer_->GetListeningPorts();
    if (ports.empty()) return IoError(fmt::format("metrics http: no listening port on {}", bind));
    http_port_ = static_cast<uint16_t>(ports.front());
    return http_port_;
  } catch (const std::exception& e) {
    return IoError(fmt::format("metrics http on {}: {}", bind, e.what()));
  }
}

}  // namespace lego
