// WorkerPool: a fixed set of threads draining a bounded FIFO of tasks.
//
// Submit() blocks while the queue is full, so a producer that outruns the
// workers is slowed down instead of growing memory: this is how CPU work
// (chunk hashing, compression, sealing) stays bounded whatever the dataset
// size. Tasks must not throw (Ferry code does not); an escaping exception
// terminates the process, which the tests would catch loudly.
//
// Thread-safety: thread-safe. The destructor waits for queued tasks to finish.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace ferry {

class WorkerPool {
 public:
  // threads >= 1; queue_capacity >= 1 (tasks waiting, not counting running ones).
  WorkerPool(size_t threads, size_t queue_capacity);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Enqueues `fn`, blocking while the queue is full. Returns its result as a future.
  template <typename F>
  auto Submit(F&& fn) -> std::future<std::invoke_result_t<std::decay_t<F>>> {
    using R = std::invoke_result_t<std::decay_t<F>>;
    auto task = std::make_shared<std::packaged_task<R()>>(std::forward<F>(fn));
    std::future<R> fut = task->get_future();
    Enqueue([task] { (*task)(); });
    return fut;
  }

  size_t threads() const { return threads_.size(); }

  // A sensible default worker count: the CPUs this process may use.
  static size_t DefaultThreads();

 private:
  void Enqueue(std::function<void()> fn);
  void Run();

  const size_t capacity_;
  std::mutex mu_;
  std::condition_variable not_empty_;
  std::condition_variable not_full_;
  std::deque<std::function<void()>> queue_;  // guarded by mu_
  bool stopping_ = false;                    // guarded by mu_
  std::vector<std::thread> threads_;
};

}  // namespace ferry
