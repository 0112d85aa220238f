// unwind_sort: std::sort with a comparator, built with g++ -O2 without frame
// pointers: main -> sort_loop -> std::sort internals -> by_key.
// Usage: unwind_sort SECONDS (0: until killed)
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <vector>

struct Item {
	unsigned long key;
	unsigned long pad;
};

static volatile unsigned long sink;

__attribute__((noipa)) bool by_key(const Item &a, const Item &b)
{
	return a.key < b.key;
}

__attribute__((noipa)) void sort_loop(double seconds)
{
	auto start = std::chrono::steady_clock::now();
	std::vector<Item> v(1 << 14);
	unsigned long seed = 1;
	while (seconds <= 0 || std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < seconds) {
		for (auto &it : v) {
			seed = seed * 6364136223846793005UL + 1442695040888963407UL;
			it.key = seed >> 20;
		}
		std::sort(v.begin(), v.end(), by_key);
		sink = v[0].key;
	}
}

int main(int argc, char **argv)
{
	sort_loop(argc > 1 ? std::atof(argv[1]) : 0);
	return 0;
}
