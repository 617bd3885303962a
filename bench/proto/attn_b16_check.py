import torch, sys
from qllama.attention_kernels import attention_decode
dev = torch.device('cuda'); nh, nkv, d = 64, 8, 128
cos = torch.randn(8192, d, device=dev); sin = torch.randn(8192, d, device=dev)
for B, ctx, kw in [(16, 128, {}), (16, 128, dict(merge_max=0)), (16, 128, dict(rope=False)), (2, 128, {}), (4, 128, {}), (16, 4096, {})]:
    kc = torch.randn(B, nkv, 4096, d, device=dev, dtype=torch.float16); vc = torch.randn_like(kc)
    q = torch.randn(B, 1, nh, d, device=dev, dtype=torch.float16).transpose(1, 2)
    kn = torch.randn(B, nkv, 1, d, device=dev, dtype=torch.float16); vn = torch.randn_like(kn)
    pos = torch.full((B,), ctx - 1, device=dev, dtype=torch.long); slots = torch.arange(B, device=dev)
    rope = None if kw.pop('rope', True) is False else (cos, sin, kn, vn)
    try:
        o = attention_decode(q, kc, vc, pos, slots, ctx, rope=rope, **kw); torch.cuda.synchronize()
        print(B, ctx, kw, 'rope' if rope else 'norope', 'ok', o.float().abs().mean().item(), flush=True)
    except Exception as e:
        print(B, ctx, kw, 'FAIL', str(e)[:100], flush=True); sys.exit(1)
