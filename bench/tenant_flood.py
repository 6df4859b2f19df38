# Part of bench/operator.sh.
# Publishes events naming 4,096 new tenants a second (names of ~250 bytes)
# and prints the hub's RSS every 10 s: the per-tenant numbers must level off.
import json, sys, time, urllib.request, subprocess
base, key, pid, secs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
pad = "x" * 240
start = time.time(); n = 0; sec = 0
while time.time() - start < secs:
    t0 = time.time()
    for b in range(8):
        events = [{"topics": ["t"], "data": "x", "audience": {"tenant": f"{pad}-{sec}-{b}-{i}"}} for i in range(512)]
        req = urllib.request.Request(base + "/v1/publish", data=json.dumps({"events": events}).encode(),
                                     headers={"authorization": "Bearer " + key, "content-type": "application/json"})
        urllib.request.urlopen(req).read(); n += 512
    sec += 1
    if sec % 10 == 0:
        rss = open(f"/proc/{pid}/status").read().split("VmRSS:")[1].split()[0]
        print(f"{time.time()-start:5.0f} s  {n} events  RSS {int(rss)//1024} MiB", flush=True)
    time.sleep(max(0, 1 - (time.time() - t0)))
