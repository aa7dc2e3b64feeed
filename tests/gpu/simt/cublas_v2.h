/* cublas_v2.h (SIMT emulation): see simt_fake.h */
#include "simt_fake.h"
