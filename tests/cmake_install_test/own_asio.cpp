// An embedder that compiles Asio itself (BOOST_ASIO_SEPARATE_COMPILATION): these strong
// definitions and the inline ones in qmpkit's objects must link without duplicates.
#include <boost/asio/impl/src.hpp>
