#include "pump.h"

#include <unistd.h>

namespace fusetrace {

Pump::Pump(const PumpOptions& opts, std::function<void()> wake)
    : opts_(opts), sink_(opts, std::move(wake)), ring_(opts, sink_), relay_(opts, sink_, opts.inprocess ? &ring_ : nullptr) {}

Pump::~Pump() { Stop(); }

void Pump::Start() {
  started_ = true;
  relay_.Start();
}

void Pump::Stop() {
  if (stopped_) return;
  stopped_ = true;
  relay_.RequestStop();
  ring_.RequestStop();
  // The writer thread may be granting a takeover: join it before the ring thread.
  relay_.JoinLoops();
  ring_.Finish();
  bool leak_dev = !relay_.JoinNotify();
  if (leak_dev) leaked_ = true;
  if (opts_.sock_fd >= 0) close(opts_.sock_fd);
  if (opts_.dev_fd >= 0 && !leak_dev) close(opts_.dev_fd);
  opts_.sock_fd = opts_.dev_fd = -1;
}

}  // namespace fusetrace
