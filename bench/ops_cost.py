# Part of bench/operator.sh: the cost of the operator endpoints at N open streams.
# Cost of the operator endpoints at N open streams: time per request of
# /v1/connections (all, limit=1000), /v1/overview, and publish latency with
# and without a console-like poller. Usage: ops_cost.py BASE SECRET KEY N
import asyncio, base64, hashlib, hmac, json, sys, time, urllib.request, statistics
base, secret, key, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
host, port = base.split('//')[1].split(':'); port = int(port)
def b64(d): return base64.urlsafe_b64encode(d).rstrip(b'=').decode()
def jwt(sub, tenant):
    h = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    c = {"sub": sub, "exp": int(time.time()) + 3600, "tenant": tenant, "sid": sub, "herald": {"subscribe": ["*"]}}
    b = b64(json.dumps(c).encode())
    s = b64(hmac.new(secret.encode(), f"{h}.{b}".encode(), hashlib.sha256).digest())
    return f"{h}.{b}.{s}"
def get(path):
    t = time.perf_counter()
    r = urllib.request.urlopen(urllib.request.Request(base + path, headers={"authorization": "Bearer " + key}))
    body = r.read(); return time.perf_counter() - t, len(body)
def publish():
    t = time.perf_counter()
    req = urllib.request.Request(base + "/v1/publish", data=json.dumps({"topics": ["t"], "data": "x", "audience": {"tenant": "acme"}}).encode(),
                                 headers={"authorization": "Bearer " + key, "content-type": "application/json"})
    urllib.request.urlopen(req).read(); return time.perf_counter() - t
async def main():
    conns = []
    for i in range(n):
        r, w = await asyncio.open_connection(host, port)
        tok = jwt(f"u{i}", f"t{i % 100}" if i % 10 else "acme")
        w.write(f"GET /v1/events?topic=t HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {tok}\r\n\r\n".encode())
        conns.append((r, w))
        if i % 500 == 499: await asyncio.sleep(0)
    for r, w in conns: await r.readuntil(b": connected")
    async def drain(r):
        while await r.read(65536): pass
    tasks = [asyncio.create_task(drain(r)) for r, _ in conns]
    await asyncio.sleep(2)
    loop = asyncio.get_running_loop()
    def stats(xs): xs = sorted(xs); return f"p50 {1000*statistics.median(xs):.1f} ms, p99 {1000*xs[int(len(xs)*0.99)-1]:.1f} ms"
    for path in ["/v1/connections", "/v1/connections?limit=1000", "/v1/overview"]:
        ts = [await loop.run_in_executor(None, get, path) for _ in range(20)]
        print(f"{path}: {stats([t for t, _ in ts])}, {ts[0][1]} bytes")
    quiet = [await loop.run_in_executor(None, publish) for _ in range(100)]
    print(f"publish, nobody polling: {stats(quiet)}")
    stop = False
    async def poller():
        while not stop:
            await loop.run_in_executor(None, get, "/v1/connections?limit=1000")
            await loop.run_in_executor(None, get, "/v1/overview")
            await asyncio.sleep(1)
    p = asyncio.create_task(poller())
    busy = [await loop.run_in_executor(None, publish) for _ in range(100)]
    stop = True; await p
    print(f"publish, one console polling: {stats(busy)}")
asyncio.run(main())
