#include "core/worker_pool.h"

#include <sched.h>

namespace ferry {

WorkerPool::WorkerPool(size_t threads, size_t queue_capacity)
    : capacity_(queue_capacity == 0 ? 1 : queue_capacity) {
  if (threads == 0) threads = 1;
  threads_.reserve(threads);
  for (size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { Run(); });
}

WorkerPool::~WorkerPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  not_empty_.notify_all();
  for (auto& t : threads_) t.join();
}

void WorkerPool::Enqueue(std::function<void()> fn) {
  std::unique_lock<std::mutex> lock(mu_);
  not_full_.wait(lock, [this] { return queue_.size() < capacity_; });
  queue_.push_back(std::move(fn));
  lock.unlock();
  not_empty_.notify_one();
}

void WorkerPool::Run() {
  while (true) {
    std::function<void()> fn;
    {
      std::unique_lock<std::mutex> lock(mu_);
      not_empty_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping and drained
      fn = std::move(queue_.front());
      queue_.pop_front();
    }
    not_full_.notify_one();
    fn();
  }
}

size_t WorkerPool::DefaultThreads() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return static_cast<size_t>(n);
  }
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : n;
}

}  // namespace ferry
