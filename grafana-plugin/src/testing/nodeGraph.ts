import { DataFrame } from '@grafana/data';

import { fieldValues } from '../frames';

/** The Node Graph panel's contract (Grafana docs, nodeGraph/utils.ts), checked on any frames. */
export function expectNodeGraphRules(frames: DataFrame[]) {
  const nodes = frames.find((f) => f.name === 'nodes')!;
  const edges = frames.find((f) => f.name === 'edges')!;
  expect(nodes).toBeDefined();
  expect(edges).toBeDefined();
  for (const f of [nodes, edges]) {
    expect(f.meta?.preferredVisualisationType).toBe('nodeGraph');
  }
  expect(nodes.fields.find((f) => f.name === 'source')).toBeUndefined();
  const ids = fieldValues(nodes, 'id') as string[];
  expect(new Set(ids).size).toBe(ids.length);
  const known = new Set(ids);
  const sources = fieldValues(edges, 'source') as string[];
  const targets = fieldValues(edges, 'target') as string[];
  sources.forEach((s, i) => {
    expect(known.has(s)).toBe(true);
    expect(known.has(targets[i])).toBe(true);
  });
  const edgeIds = fieldValues(edges, 'id') as string[];
  expect(new Set(edgeIds).size).toBe(edgeIds.length);
  const arcs = nodes.fields.filter((f) => f.name.startsWith('arc__'));
  expect(arcs.length).toBeGreaterThan(0);
  for (let i = 0; i < nodes.length; i++) {
    let sum = 0;
    for (const a of arcs) {
      const v = a.values[i] as number;
      expect(v).toBeGreaterThanOrEqual(0);
      expect(v).toBeLessThanOrEqual(1);
      sum += v;
    }
    expect(sum).toBeCloseTo(1, 9);
  }
  for (const a of arcs) {
    expect(a.config.color?.fixedColor).toBeTruthy();
  }
}
