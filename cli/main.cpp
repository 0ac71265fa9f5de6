#include <cstdio>
int main() { std::puts("vidfarm: under construction"); return 0; }
