/* cuda_runtime.h (SIMT emulation): see simt_fake.h */
#include "simt_fake.h"
