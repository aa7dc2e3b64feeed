/* test_db.c: the store and the sink in one process. */
#include "db/sink.h"
#include "db/store.h"
#include "tests/test.h"
int main(void) { return test_summary("db"); }
