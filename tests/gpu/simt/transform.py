"""transform.py OPS_CU OUT: kernels/cuda/ops.cu rewritten for a host build against simt_fake.h
(tests/gpu/simt): each launch `k<<<grid, block, smem, stream>>>(args);` becomes
`emu_launch[_sync](dim3(grid), dim3(block), smem, emu_bind(k, args));` (_sync for a kernel that
uses barriers or warp shuffles, directly or through warp_sum / warp_max / block_sum_256), and the
one `extern __shared__` array points at the launch's dynamic shared memory. Exits 1 when a launch
is left that it does not understand."""
import re, sys
src = open(sys.argv[1]).read()
# kernels that synchronise (directly or through the device helpers)
helpers = {'warp_sum', 'warp_max', 'block_sum_256'}
sync_words = ['__syncthreads', '__syncwarp', '__shfl_xor_sync', '__shfl_sync'] + list(helpers)
sync_kernels = set()
for m in re.finditer(r'__global__ void (\w+)\((.*?)\)\s*\{', src, re.S):
    name = m.group(1)
    # body: until the matching brace
    i = m.end(); depth = 1
    while depth:
        c = src[i]; depth += c == '{'; depth -= c == '}'; i += 1
    body = src[m.end():i]
    if any(w in body for w in sync_words): sync_kernels.add(name)
print("sync kernels:", sorted(sync_kernels), file=sys.stderr)
def split_top(s):
    out, depth, cur = [], 0, ''
    for c in s:
        if c in '([': depth += 1
        if c in ')]': depth -= 1
        if c == ',' and depth == 0: out.append(cur); cur = ''
        else: cur += c
    out.append(cur); return [x.strip() for x in out]
def repl(m):
    name, tmpl, cfg, args = m.group(1), m.group(2) or '', m.group(3), m.group(4)
    c = split_top(cfg)
    g, b = c[0], c[1]; smem = c[2] if len(c) > 2 else '0'
    fn = 'emu_launch_sync' if name in sync_kernels else 'emu_launch'
    # emu_bind converts the arguments to the kernel's parameters now, at the launch, as CUDA does
    # (a lambda would evaluate them when a replayed graph runs, through pointers gone by then)
    # (a bare NULL would reach it as an integer: nullptr converts to any pointer parameter)
    args = ', '.join('nullptr' if a == 'NULL' else a for a in split_top(args))
    return f'{fn}(dim3({g}), dim3({b}), {smem}, emu_bind({name}{tmpl}, {args}));'
src, n = re.subn(r'(\w+)(<\d+>)?<<<(.*?)>>>\((.*?)\);', repl, src, flags=re.S)
print("launches:", n, file=sys.stderr)
src = src.replace('extern __shared__ float rowloss[];', 'float *rowloss = (float *)emu_dyn_smem();')
src = '#include "simt_fake.h"\n' + src
if '<<<' in src:
    sys.exit('transform.py: a kernel launch it cannot rewrite is left in ' + sys.argv[1])
open(sys.argv[2], 'w').write(src)
