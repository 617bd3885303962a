"Peak memory of a snippet run in a fresh Python: RssAnon sampled every 2 ms by a watcher thread."
import json, subprocess, sys, textwrap

WATCH = textwrap.dedent('''
    import threading, time
    def anon():
        for l in open('/proc/self/status'):
            if l.startswith('RssAnon:'): return int(l.split()[1]) * 1024
    peak = [anon()]; base = peak[0]; stop = []
    def watch():
        while not stop: peak[0] = max(peak[0], anon()); time.sleep(0.002)
    threading.Thread(target=watch, daemon=True).start()
''')

def peak_rss(setup:str, body:str, *args) -> dict:
    "Run `setup` unmeasured, then `body` watched (it may set a dict `extra`); returns base, peak and extra's keys."
    code = (textwrap.dedent(setup) + WATCH + 'extra = {}\n' + textwrap.dedent(body)
            + '\nstop.append(1); time.sleep(0.01)\nimport json; print(json.dumps(dict(base=base, peak=peak[0], **extra)))\n')
    out = subprocess.run([sys.executable, '-c', code, *map(str, args)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])
