// Boost.JSON compiled into the fuzz target, so its parser is instrumented as well.
#include <boost/json/src.hpp>
