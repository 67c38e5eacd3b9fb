// useLoad: fetch on mount and when its inputs change; reload() keeps the old data on screen
// while the new arrives, so live refreshes do not flicker.
import { useCallback, useEffect, useRef, useState } from "./view.js";

export function useLoad(fetcher, inputs = []) {
  const [state, setState] = useState({ data: null, error: null, loading: true });
  const generation = useRef(0);
  const latest = useRef(fetcher);
  latest.current = fetcher;

  const reload = useCallback(async () => {
    const mine = ++generation.current;
    setState((before) => ({ ...before, loading: true }));
    try {
      const data = await latest.current();
      if (mine === generation.current) setState({ data, error: null, loading: false });
    } catch (error) {
      if (mine === generation.current) setState((before) => ({ ...before, error, loading: false }));
    }
  }, []);

  useEffect(() => {
    setState({ data: null, error: null, loading: true });
    reload();
  }, inputs);

  return { ...state, reload, setData: (data) => setState((s) => ({ ...s, data })) };
}
