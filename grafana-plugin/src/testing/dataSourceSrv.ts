/**
 * A stand-in for Grafana's data source service (it lives in Grafana's server-rendered app, which
 * cannot run here): a fixed list of data sources, enough for the config editor's Tempo picker.
 * Used by the jsdom tests and the browser harness.
 */
import { DataSourceInstanceSettings } from '@grafana/data';
import { DataSourceRef } from '@grafana/schema';
import { DataSourceSrv, GetDataSourceListFilters } from '@grafana/runtime';

function settings(uid: string, name: string, type: string, isDefault = false): DataSourceInstanceSettings {
  return {
    isDefault,
    uid,
    name,
    type,
    access: 'proxy',
    readOnly: false,
    jsonData: {},
    meta: {
      id: type,
      name: type,
      type: 'datasource',
      module: '',
      baseUrl: '',
      tracing: type === 'tempo',
      info: {
        author: { name: 'Grafana Labs' },
        description: '',
        links: [],
        logos: { small: '', large: '' },
        screenshots: [],
        updated: '',
        version: '',
      },
    },
  } as DataSourceInstanceSettings;
}

/** Two Tempo data sources and a Prometheus one (the default). */
export const KNOWN_DATASOURCES = [
  settings('tempo-main', 'Tempo', 'tempo'),
  settings('tempo-staging', 'Tempo staging', 'tempo'),
  settings('prom', 'Prometheus', 'prometheus', true),
];

export function fixedDataSourceSrv(list = KNOWN_DATASOURCES): DataSourceSrv {
  // As Grafana's: no reference means the default data source.
  const find = (ref?: DataSourceRef | string | null) => {
    const key = typeof ref === 'string' ? ref : ref?.uid;
    return key ? list.find((d) => d.uid === key || d.name === key) : list.find((d) => d.isDefault);
  };
  return {
    get: async (ref) => {
      throw new Error(`no data source instances here (asked for ${JSON.stringify(ref)})`);
    },
    getList: (filters?: GetDataSourceListFilters) =>
      list.filter((d) => (!filters?.pluginId || d.type === filters.pluginId) && (!filters?.tracing || d.meta.tracing)),
    getInstanceSettings: find,
    reload: () => {},
    registerRuntimeDataSource: () => {},
  };
}
