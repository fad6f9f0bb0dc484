#pragma once

// Completing a type-erased asynchronous handler, for every asynchronous operation of the
// library (the QMP clients here, the pool above). Completion is always posted, never run inline
// from the initiating call, so handlers never re-enter the object that completes them.
//
// Boost 1.81 trap: any_completion_handler's move *assignment* copies its argument as an lvalue,
// which its converting constructor then wraps in itself without end. Only ever move-construct
// one (std::optional::emplace, aggregate initialisation), never assign.

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/post.hpp>

#include <tuple>
#include <utility>

namespace qmpkit::qmp::detail {

// Calls `handler` with `args` on its associated executor (`ex` when it has none), later.
template <typename Signature, typename... Args>
void post_completion(const boost::asio::any_io_executor& ex,
                     boost::asio::any_completion_handler<Signature> handler, Args&&... args) {
    auto slot = boost::asio::get_associated_cancellation_slot(handler);
    if (slot.is_connected())
        slot.clear();
    // Not asio::append: in Boost 1.81 it makes any_completion_handler's converting constructor
    // wrap the handler in itself without end.
    auto target = boost::asio::get_associated_executor(handler, ex);
    boost::asio::post(
        ex, boost::asio::bind_executor(
                target, [h = std::move(handler),
                         values = std::make_tuple(std::forward<Args>(args)...)]() mutable {
                    std::apply([&](auto&... v) { std::move(h)(std::move(v)...); }, values);
                }));
}

} // namespace qmpkit::qmp::detail
