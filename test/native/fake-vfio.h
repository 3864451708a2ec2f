/* Shared by the fake VFIO device and the v1 client that tests the interposer. */
#include <stdint.h>
#include <sys/ioctl.h>

#define FAKE_NUM_REGIONS 9
#define FAKE_BAR5_OFFSET ((10ull << 40) + 0x3000)
#define FAKE_BAR5_SIZE 0x2000
/* regions end at (10 << 40) + 0x5000: the bridged region belongs at 11 << 40 */

struct fake_counters { uint32_t infos, resets, features; };
#define FAKE_VFIO_COUNTERS _IOR('F', 0x77, struct fake_counters)
